"""The canonical call and the recorded answer: what every client's request and response become."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import _body


@dataclass
class HttpCall:
    """A client's request in neutral form."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    client: str


class Answer:
    """A recorded response (or error) to serve in replay, in wire form for the client to parse."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        response = event.get("response")
        self.error: dict[str, Any] | None = event.get("error")
        self.status: int = response["status"] if response else 0
        self.reason: str = (response or {}).get("reason") or ""
        self.http_version: str = (response or {}).get("http_version") or "HTTP/1.1"
        self.has_response = response is not None
        recorded_headers = [tuple(h) for h in (response or {}).get("headers", [])]
        encoding = (
            None
            if (response or {}).get("body_encoding")
            else _body.header(recorded_headers, "content-encoding")
        )
        self._encoding = encoding
        self._redacted: list[str] = list(event.get("redacted") or ())
        self._edited = bool(
            event.get("edited")
        )  # a counterfactual answer (agenttrace replay --edit)
        self._payload = self._decoded_chunks(response or {})
        self.headers: list[tuple[str, str]] = self._framed(recorded_headers)

    def _framed(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The recorded headers, with a Content-Length that matches the bytes served.

        Scrubbing and masks change a body's length, and a re-applied content-coding its bytes:
        a client that trusts the recorded length would read too little or wait for more. An
        empty, uncoded payload keeps its recorded length (a HEAD response announces a body it has
        not), and so does a body the server cut short (the recorded error is what replays).
        """
        if _body.header(headers, "content-length") is None:
            return headers
        if not self._payload and not self._encoding:
            return headers
        changed = self._edited or any(
            p.startswith(("response.body", "response.chunks")) for p in self._redacted
        )
        if self.error is not None and not changed:
            return headers
        length = str(len(self.body()))
        return [(k, length if k.lower() == "content-length" else v) for k, v in headers]

    @staticmethod
    def _decoded_chunks(response: dict[str, Any]) -> list[bytes]:
        if response.get("chunks") is not None:
            return [_body.decode_body(c) for c in response["chunks"]]
        data = _body.decode_body(response.get("body"))
        return [data] if data else []

    def chunks(self) -> Iterator[bytes]:
        """The body as the server sent it: recorded chunks, content-coding re-applied."""
        encoder = _body.ContentEncoder(self._encoding)
        last = len(self._payload) - 1
        if last < 0 and self._encoding:
            yield encoder.encode(b"", final=True)
        for i, data in enumerate(self._payload):
            out = encoder.encode(data, final=i == last)
            if out:
                yield out

    def decoded_chunks(self) -> list[bytes]:
        """The body as recorded, content-coding removed (for a client that decodes itself)."""
        return list(self._payload)

    def body(self) -> bytes:
        return b"".join(self.chunks())
