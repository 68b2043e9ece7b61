"""Bodies as stored in events: decoded (content-coding removed) as json, text or base64."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

_TEXT_TYPES = (
    "json",
    "text/",
    "xml",
    "javascript",
    "x-www-form-urlencoded",
    "event-stream",
    "ndjson",
)


def header(headers: list[list[str]] | list[tuple[str, str]], name: str) -> str | None:
    """First value of a header (case-insensitive) in a list of pairs."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


def encode_body(data: bytes, content_type: str | None = None) -> dict[str, Any] | None:
    """Store bytes as {"json": ...}, {"text": ...} or {"base64": ...}; None for no body."""
    if not data:
        return None
    ctype = (content_type or "").lower()
    if "json" in ctype and "ndjson" not in ctype or not ctype:
        try:
            text = data.decode("utf-8")
            value = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            pass
        else:
            # Only when it round-trips exactly: replay must serve the very same bytes.
            layout = _json_layout(value, text)
            if layout == _COMPACT:
                return {"json": value}
            if layout is not None:
                return {"json": value, "json_layout": layout}
    if not ctype or any(t in ctype for t in _TEXT_TYPES):
        try:
            return {"text": data.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {"base64": base64.b64encode(data).decode("ascii")}


# How a JSON body was serialised, so replay serves the very same bytes. The compact, non-ASCII
# layout is the default and is not written into the event.
_COMPACT = "compact"
_JSON_LAYOUTS: dict[str, dict[str, Any]] = {
    _COMPACT: {"separators": (",", ":"), "ensure_ascii": False},
    "compact_ascii": {"separators": (",", ":")},
    "spaced": {"ensure_ascii": False},
    "spaced_ascii": {},
}


def _json_layout(value: Any, text: str) -> str | None:
    for name, kwargs in _JSON_LAYOUTS.items():
        if json.dumps(value, **kwargs) == text:
            return name
    return None


def json_value(body: Any, default: Any = None) -> Any:
    """The JSON value a stored body holds: its ``json``, or a ``text`` that parses (JSON sent as
    another content type, or pretty-printed); ``default`` for anything else."""
    if not isinstance(body, dict):
        return default
    if "json" in body:
        return body["json"]
    if isinstance(body.get("text"), str):
        try:
            return json.loads(body["text"])
        except ValueError:
            return default
    return default


def decode_body(body: dict[str, Any] | None) -> bytes:
    """The bytes a stored body stands for (inverse of encode_body)."""
    if not body:
        return b""
    if "base64" in body:
        return base64.b64decode(body["base64"])
    if "text" in body:
        return body["text"].encode("utf-8")
    if "json" in body:
        layout = _JSON_LAYOUTS.get(body.get("json_layout") or _COMPACT, _JSON_LAYOUTS[_COMPACT])
        return json.dumps(body["json"], **layout).encode("utf-8")
    return b""


def encode_chunk(data: bytes) -> dict[str, Any]:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


class ContentDecoder:
    """Incremental removal of gzip/deflate content-coding, chunk by chunk."""

    def __init__(self, encoding: str | None) -> None:
        enc = (encoding or "").strip().lower()
        self.supported = enc in ("", "identity", "gzip", "x-gzip", "deflate")
        self._z = None
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        self._deflate_raw_fallback = enc == "deflate"

    def decode(self, data: bytes) -> bytes:
        if self._z is None or not self.supported:
            return data
        try:
            return self._z.decompress(data)
        except zlib.error:
            if self._deflate_raw_fallback:  # some servers send raw deflate without zlib header
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._deflate_raw_fallback = False
                return self._z.decompress(data)
            raise

    def flush(self) -> bytes:
        if self._z is None or not self.supported:
            return b""
        return self._z.flush()


class ContentEncoder:
    """Re-apply a recorded content-coding so replay serves what the server sent."""

    def __init__(self, encoding: str | None) -> None:
        enc = (encoding or "").strip().lower()
        self._z = None
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.compressobj()

    def encode(self, data: bytes, final: bool = False) -> bytes:
        if self._z is None:
            return data
        out = self._z.compress(data)
        out += self._z.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
        return out
