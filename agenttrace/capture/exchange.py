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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

from opentelemetry.trace import Span, Status, StatusCode

from .. import _body, _context, _trace
from .calls import Answer, HttpCall
from .errors import error_record

logger = logging.getLogger("agenttrace")

_STREAM_TYPES = ("event-stream", "ndjson", "x-jsonlines")
_COALESCE_S = 0.001  # reads closer together than this are stored as one chunk


class ExchangeOwner(Protocol):
    """Who decided what happens to a call, and so what becomes of its event."""

    def finish(self, exchange: Exchange, event: dict[str, Any]) -> None:
        """The call ended: ``event`` is complete (unredacted for a live call)."""

    def scrub(self, text: str) -> str:
        """Free text (an error message) as it may appear on a span."""


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


class Exchange:
    """A live call: the response, body chunks and error its client reports."""

    answer: Answer | None = None  # what a Player serves instead of going live

    def __init__(
        self,
        owner: ExchangeOwner,
        call: HttpCall,
        *,
        seq: int,
        step: str | None,
        rules: Any,
        request: dict[str, Any],
        request_redacted: list[str],
        run: Any,
        span: Span,
        own_span: bool,
    ) -> None:
        self.owner = owner
        self.call = call
        self.seq = seq
        self.step = step
        self.rules = rules
        self.request = request  # already redacted: it is also the replay key
        self.request_redacted = request_redacted
        self.run = run
        self.span = span
        self.own_span = own_span  # False: we enrich an outer instrumentation's CLIENT span
        self._started = time.perf_counter()
        self._response: dict[str, Any] | None = None
        self._error: dict[str, Any] | None = None
        self._decoder: _body.ContentDecoder | None = None
        self._chunks: list[tuple[float, bytearray]] = []
        self._last_chunk_at = -1.0
        self._done = False

    # -- what the client reports ---------------------------------------------------------------

    @contextmanager
    def sending(self, phase: str | None = None) -> Iterator[None]:
        """Wrap the real call: layers below are not captured again; an exception is recorded
        (``phase`` says which call raised it, so replay raises it there too)."""
        token = _context.enter_call()
        try:
            yield
        except BaseException as exc:
            self.fail(exc, phase=phase)
            raise
        finally:
            _context.exit_call(token)

    def response(
        self,
        status: int,
        headers: Any,
        *,
        reason: str | None = None,
        http_version: str | None = None,
    ) -> None:
        try:
            pairs = [(_s(k), _s(v)) for k, v in headers]
            self._response = {"status": int(status), "headers": [list(h) for h in pairs]}
            if reason:
                self._response["reason"] = reason
            if http_version:
                self._response["http_version"] = http_version
            encoding = _body.header(pairs, "content-encoding")
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
            self._chunks.append(((now - self._started) * 1000.0, bytearray(data)))
        self._last_chunk_at = now

    def fail(self, exc: BaseException, phase: str | None = None) -> None:
        """The call or its body failed."""
        if self._done:
            return
        try:
            self._error = error_record(exc)
            if phase is not None:
                self._error["phase"] = phase
            if self.own_span or self.span.is_recording():
                self.span.set_attribute("error.type", type(exc).__qualname__)
                message = self.owner.scrub(f"{type(exc).__name__}: {exc}")
                self.span.set_status(Status(StatusCode.ERROR, message))
        except Exception:
            logger.exception("agenttrace: could not record an error")
        self.close()

    @property
    def answered(self) -> bool:
        """The client reported a response or an error: the call got somewhere."""
        return self._response is not None or self._error is not None

    def close(self) -> None:
        """The body is fully read or the caller closed it: complete the event and its span."""
        if self._done:
            return
        self._done = True
        try:
            self._finish()
        except Exception:
            logger.exception("agenttrace: could not record an HTTP event")

    # -- completion ---------------------------------------------------------------------------

    def _finish(self) -> None:
        event: dict[str, Any] = {
            "seq": self.seq,
            "kind": "http",
            "step": self.step,
            "span_id": format(self.span.get_span_context().span_id, "016x"),
            "client": self.call.client,
            "request": self.request,
            "duration_ms": round((time.perf_counter() - self._started) * 1000.0, 3),
            "redacted": self.request_redacted,
        }
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
