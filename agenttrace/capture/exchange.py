"""One intercepted HTTP call as its client reports it, turned into an event when it ends.

An instrumentor gets an :class:`Exchange` from :func:`agenttrace.capture.begin` and reports
what it sees: ``sending`` around the real call, ``response``, each ``chunk`` as the caller reads
it, ``fail``, ``close``. When ``exchange.answer`` is set (a Player serves the call) the
instrumentor builds its client's response from it instead of calling the network. What is done
with the finished event — redact and record it, or book it as served — is the owner's business
(:class:`ExchangeOwner`: the Recorder or the Player), never the instrumentor's.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import Status, StatusCode

from .. import _body, _trace
from .base import Capture, CaptureOwner
from .calls import Answer, HttpCall

logger = logging.getLogger("agenttrace")

_STREAM_TYPES = ("event-stream", "ndjson", "x-jsonlines")
_COALESCE_S = 0.001  # reads closer together than this are stored as one chunk


ExchangeOwner = CaptureOwner  # the Recorder or the Player


def span_attributes(call: HttpCall, url: str, seq: int) -> dict[str, Any]:
    """The CLIENT span's attributes: HTTP semantic conventions plus our sequence number.
    ``url`` is the redacted URL: other processors see it too."""
    parts = urlsplit(url)
    attributes: dict[str, Any] = {
        "http.request.method": call.method,
        "url.full": url,
        "server.address": parts.hostname or "",
        _trace.ATTR_SEQ: seq,
        "agenttrace.client": call.client,
    }
    if parts.port:
        attributes["server.port"] = parts.port
    return attributes


class Exchange(Capture):
    """A live call: the response, body chunks and error its client reports."""

    kind = "http"
    answer: Answer | None = None  # what a Player serves instead of going live

    def __init__(
        self,
        owner: ExchangeOwner,
        call: HttpCall,
        *,
        request: dict[str, Any],
        request_redacted: list[str],
        **where: Any,
    ) -> None:
        super().__init__(owner, **where)
        self.call = call
        self.request = request  # already redacted: it is also the replay key
        self.request_redacted = request_redacted
        self._response: dict[str, Any] | None = None
        self._decoder: _body.ContentDecoder | None = None
        self._chunks: list[tuple[float, bytearray]] = []
        self._last_chunk_at = -1.0

    # -- what the client reports ---------------------------------------------------------------

    def response(
        self,
        status: int,
        headers: Any,
        *,
        reason: str | None = None,
        http_version: str | None = None,
        decoded: bool = False,
    ) -> None:
        """The status line and headers. ``decoded``: the client hands over the body with its
        content-coding already removed (aiohttp), so the chunks are stored as they come."""
        try:
            pairs = [(_s(k), _s(v)) for k, v in headers]
            self._response = {"status": int(status), "headers": [list(h) for h in pairs]}
            if reason:
                self._response["reason"] = reason
            if http_version:
                self._response["http_version"] = http_version
            encoding = None if decoded else _body.header(pairs, "content-encoding")
            self._decoder = _body.ContentDecoder(encoding)
            if not self._decoder.supported:
                self._response["body_encoding"] = encoding
        except Exception:  # never break the agent
            logger.exception("agenttrace: could not record a response")

    def chunk(self, data: bytes) -> None:
        if not data or self._done:
            return
        try:
            decoded = self._decoder.decode(bytes(data)) if self._decoder else bytes(data)
            self._append(decoded)
        except Exception:
            # A body we cannot decode is kept as it came (base64) instead of being lost.
            if self._response is not None and "body_encoding" not in self._response:
                self._response["body_encoding"] = _body.header(
                    [tuple(h) for h in self._response["headers"]], "content-encoding"
                )
                self._decoder = None
                self._chunks = []
            self._append(bytes(data))

    def _append(self, data: bytes) -> None:
        if not data:
            return
        now = time.perf_counter()
        if self._chunks and now - self._last_chunk_at < _COALESCE_S:
            self._chunks[-1][1].extend(data)
        else:
            self._chunks.append((self.elapsed_ms(), bytearray(data)))
        self._last_chunk_at = now

    # -- completion ---------------------------------------------------------------------------

    def _finish(self) -> None:
        event = self.event_head()
        event.update(
            client=self.call.client,
            request=self.request,
            duration_ms=self.duration_ms(),
            redacted=self.request_redacted,
        )
        self._complete(event)
        span = self.span
        if self._response is not None and (self.own_span or span.is_recording()):
            span.set_attribute("http.response.status_code", self._response["status"])
            if self._response["status"] >= 400 and self.own_span:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(self._response["status"]))
        self.owner.finish(self, event)

    def _complete(self, event: dict[str, Any]) -> None:
        """Add what the client reported: the response (whole or as chunks) and the error."""
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._append(tail)
        if self._response is not None:
            response = self._response
            headers = [tuple(h) for h in response["headers"]]
            ctype = (_body.header(headers, "content-type") or "").lower()
            streamed = any(t in ctype for t in _STREAM_TYPES) or (
                len(self._chunks) > 1 and _body.header(headers, "content-length") is None
            )
            if streamed:
                response["chunks"] = [
                    {"at_ms": round(at, 3), **_body.encode_chunk(bytes(data))}
                    for at, data in self._chunks
                ]
            else:
                data = b"".join(bytes(d) for _, d in self._chunks)
                response["body"] = (
                    {"base64": base64.b64encode(data).decode("ascii")}
                    if "body_encoding" in response
                    else _body.encode_body(data, ctype)
                )
            event["response"] = response
        if self._error is not None:
            event["error"] = self._error


class ServedExchange(Exchange):
    """A call served from the recording: its event is the recorded (already redacted) answer."""

    def __init__(self, owner: ExchangeOwner, call: HttpCall, answer: Answer, **kwargs: Any):
        super().__init__(owner, call, **kwargs)
        self.answer = answer

    def response(self, status: int, headers: Any, **kwargs: Any) -> None:
        self._response = {"status": int(status)}

    def chunk(self, data: bytes) -> None:
        pass

    def _complete(self, event: dict[str, Any]) -> None:
        recorded = self.answer.event if self.answer is not None else {}
        if recorded.get("response") is not None:
            event["response"] = recorded["response"]
        error = recorded.get("error") or self._error
        if error is not None:
            event["error"] = error
        answer_paths = [p for p in recorded.get("redacted", ()) if not p.startswith("request")]
        event["redacted"] = sorted(set(self.request_redacted).union(answer_paths))


def _s(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
