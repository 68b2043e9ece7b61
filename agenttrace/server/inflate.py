"""Undo a request's Content-Encoding as its body arrives, within a size cap, in linear time."""

from __future__ import annotations

import zlib

from .otlp import PayloadError

# Input goes to zlib in slices this big: when a member ends, zlib copies what is left of the slice
# it was given (``unused_data``), so handing it the whole rest of the body made many small
# members cost quadratic time. A slice bounds that copy per member.
_SLICE = 16 * 1024
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Inflater:
    """Feed body chunks in order, then ``finish()`` for the decoded body.

    Raises ``PayloadError``: 413 once the output would pass ``limit`` bytes, 400 for a corrupt or
    truncated stream or more than ``max_members`` gzip members (concatenated deflate streams).
    """

    def __init__(self, encoding: str | None, limit: int, max_members: int) -> None:
        coding = (encoding or "identity").strip().lower()
        if coding not in ("", "identity", *_WBITS):
            raise PayloadError(
                415, f"unsupported Content-Encoding {coding!r}; send gzip or no encoding"
            )
        self.coding = coding
        self._wbits = _WBITS.get(coding)
        self._limit = limit
        self._max_members = max_members
        self._members = 0
        self._member: zlib._Decompress | None = None
        self._out = bytearray()

    @property
    def size(self) -> int:
        """Decoded bytes so far."""
        return len(self._out)

    def feed(self, chunk: bytes) -> None:
        if self._wbits is None:
            self._append(chunk)
            return
        view = memoryview(chunk)
        pos = 0
        try:
            while pos < len(view):
                member = self._member or self._start_member()
                piece = view[pos : pos + _SLICE]
                # One byte past the room left: producing it proves the body is too big.
                self._append(member.decompress(piece, self._limit - len(self._out) + 1))
                if member.eof:
                    self._member = None
                    pos += len(piece) - len(member.unused_data)
                else:
                    pos += len(piece)
        except zlib.error as exc:
            raise PayloadError(400, f"body is not valid {self.coding}: {exc}") from None

    def finish(self) -> bytearray:
        if self._member is not None:
            raise PayloadError(400, f"{self.coding} body is truncated")
        out, self._out = self._out, bytearray()
        return out

    def _start_member(self) -> zlib._Decompress:
        self._members += 1
        if self._members > self._max_members:
            raise PayloadError(
                400,
                f"{self.coding} body has more than {self._max_members} members (the limit); "
                "send one stream",
            )
        self._member = zlib.decompressobj(self._wbits)
        return self._member

    def _append(self, data: bytes) -> None:
        if len(self._out) + len(data) > self._limit:
            raise PayloadError(413, self._too_big())
        self._out += data

    def _too_big(self) -> str:
        if self._wbits is None:
            return f"request body exceeds the {self._limit}-byte limit"
        return f"payload inflates beyond the {self._limit}-byte limit"
