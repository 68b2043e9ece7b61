"""The one interception point every HTTP client meets.

An instrumentor turns its client's request into an :class:`HttpCall` and asks :func:`begin`
for an :class:`Exchange`. What happens to the call — go live and record it, serve it from the
recording, refuse it — is decided once, in the runtime, never per client. The instrumentor then
reports what it sees (``response``, ``chunk``, ``close``, ``fail``) and, in replay, builds its
client's response from ``exchange.answer``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.instrumentation.utils import (
    is_http_instrumentation_enabled,
    is_instrumentation_enabled,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _body, _context, _trace
from ._replay_span import ReplaySpan

if TYPE_CHECKING:
    from ._runtime import Runtime

logger = logging.getLogger("agenttrace")

_STREAM_TYPES = ("event-stream", "ndjson", "x-jsonlines")

# Extra keys a client stores with a recorded error so it can rebuild the same exception.
ErrorDetails = Callable[[BaseException], dict[str, Any]]
_COALESCE_S = 0.001  # reads closer together than this are stored as one chunk


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
        self._payload = self._decoded_chunks(response or {})
        if encoding and _body.header(recorded_headers, "content-length") is not None:
            length = len(b"".join(self.chunks()))
            recorded_headers = [
                (k, str(length) if k.lower() == "content-length" else v)
                for k, v in recorded_headers
            ]
        self.headers: list[tuple[str, str]] = recorded_headers

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

    def body(self) -> bytes:
        return b"".join(self.chunks())


def intercepting() -> bool:
    """Whether ``begin`` may intercept a call made here: a cheap test that lets a client skip
    preparing an ``HttpCall`` (e.g. buffering a streamed upload) when nothing would record it."""
    # Inside an intercepted call the layers below it (requests → urllib3 → http.client) must not
    # capture the same call again; suppressed instrumentation is the SDK's own export traffic.
    if _context.in_call() or not is_instrumentation_enabled():
        return False
    from ._runtime import current_runtime

    return current_runtime() is not None


def begin(call: HttpCall) -> Exchange | None:
    """Start intercepting a call; None means "not ours, call the client as if we were not here"."""
    if not intercepting():
        return None
    from ._runtime import current_runtime

    runtime = current_runtime()
    if runtime is None:
        return None
    return runtime.begin_call(call)


class Exchange:
    """One intercepted call: its span, the event being built, and the answer to serve in replay."""

    def __init__(
        self,
        runtime: Runtime,
        call: HttpCall,
        *,
        seq: int,
        step: str | None,
        rules: Any,
        request: dict[str, Any],
        request_redacted: list[str],
        answer: Answer | None,
        run: Any = None,
    ) -> None:
        self.runtime = runtime
        self.call = call
        self.answer = answer
        self.seq = seq
        self._step = step
        self._rules = rules
        self._request = request  # already redacted (once, in the runtime, for the replay key)
        self._request_redacted = request_redacted
        self._run = run
        self._started = time.perf_counter()
        self._response: dict[str, Any] | None = None
        self._error: dict[str, Any] | None = None
        self._decoder: _body.ContentDecoder | None = None
        self._chunks: list[tuple[float, bytearray]] = []
        self._last_chunk_at = -1.0
        self._done = False
        self._span, self._own_span = self._open_span()

    # -- span ---------------------------------------------------------------------------------

    def _open_span(self) -> tuple[trace.Span, bool]:
        url = urlsplit(self._request["url"])
        attributes = {
            "http.request.method": self.call.method,
            "url.full": self._request["url"],  # redacted: other processors see it too
            "server.address": url.hostname or "",
            _trace.ATTR_SEQ: self.seq,
            "agenttrace.client": self.call.client,
        }
        if url.port:
            attributes["server.port"] = url.port
        current = trace.get_current_span()
        if (
            not is_http_instrumentation_enabled()
            and current.get_span_context().is_valid
            and not _claimed(current)
            # a span outside our runs (the app instrumented requests itself, after init()) would
            # take the event out of the run's trace
            and self.runtime.owns_trace(current.get_span_context().trace_id)
        ):
            # An outer HTTP instrumentation (e.g. opentelemetry-instrumentation-requests) owns the
            # CLIENT span; we enrich it rather than nest a second one.
            if current.is_recording():
                current.set_attributes(
                    {_trace.ATTR_SEQ: self.seq, "agenttrace.client": self.call.client}
                )
            return current, False
        if self.answer is not None and self.runtime.store is not None:
            parent = self.runtime.parent_span(self._run)
            if parent is not None:
                context = parent.get_span_context()
                return ReplaySpan(self.runtime.store, self.call.method, context, attributes), True
        span = self.runtime.tracer.start_span(
            self.call.method,
            context=self.runtime.parent_context(self._run),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return span, True

    # -- what the client reports ---------------------------------------------------------------

    @contextmanager
    def sending(self, details: ErrorDetails | None = None) -> Iterator[None]:
        """Wrap the real call: layers below are not captured again; an exception is recorded
        (with ``details(exc)`` merged in, for what a client needs to rebuild it in replay)."""
        token = _context.enter_call()
        try:
            yield
        except BaseException as exc:
            self.fail(exc, details=details)
            raise
        finally:
            _context.exit_call(token)

    def response(
        self,
        status: int,
        headers: list[tuple[str, str]],
        *,
        reason: str | None = None,
        http_version: str | None = None,
    ) -> None:
        if self.answer is not None:  # replay: the event reuses the recorded (redacted) answer
            self._response = {"status": int(status)}
            return
        try:
            headers = [(_s(k), _s(v)) for k, v in headers]
            self._response = {"status": int(status), "headers": [list(h) for h in headers]}
            if reason:
                self._response["reason"] = reason
            if http_version:
                self._response["http_version"] = http_version
            encoding = _body.header(headers, "content-encoding")
            self._decoder = _body.ContentDecoder(encoding)
            if not self._decoder.supported:
                self._response["body_encoding"] = encoding
        except Exception:  # never break the agent
            logger.exception("agenttrace: could not record a response")

    def chunk(self, data: bytes) -> None:
        if not data or self._done or self.answer is not None:
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

    def fail(self, exc: BaseException, details: ErrorDetails | None = None) -> None:
        """The call or its body failed. ``details(exc)`` adds client-specific keys to the
        recorded error (never replacing type, module or message)."""
        if self._done:
            return
        try:
            self._error = {
                "type": type(exc).__name__,
                "module": type(exc).__module__,
                "message": str(exc),
            }
            if details is not None:
                try:
                    extra = details(exc)
                except Exception:
                    logger.exception("agenttrace: could not describe %r", exc)
                    extra = {}
                self._error.update({k: v for k, v in extra.items() if k not in self._error})
            if self._own_span or self._span.is_recording():
                self._span.set_attribute("error.type", type(exc).__qualname__)
                message = self.runtime.redactor.text(f"{type(exc).__name__}: {exc}")
                self._span.set_status(Status(StatusCode.ERROR, message))
        except Exception:
            logger.exception("agenttrace: could not record an error")
        self.close()

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
            "step": self._step,
            "span_id": format(self._span.get_span_context().span_id, "016x"),
            "client": self.call.client,
            "request": self._request,
            "duration_ms": round((time.perf_counter() - self._started) * 1000.0, 3),
            "redacted": self._request_redacted,
        }
        if self.answer is not None:
            redacted = self._served_event(event, self.answer.event)
        else:
            self._complete_response(event)
            redacted = self.runtime.redactor.event(event, self._rules, request_done=True)
        self.runtime.call_finished(self, redacted)
        span = self._span
        if self._response is not None and (self._own_span or span.is_recording()):
            span.set_attribute("http.response.status_code", self._response["status"])
            if self._response["status"] >= 400 and self._own_span:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(self._response["status"]))
        if self.runtime.engine is not None and self._run is not None:
            # Replay: the replayed run only goes to the local store, so its events ride on the
            # run's root span (like entropy) and are serialised once, when the run is written.
            self._run.events.append(redacted)
            if self._own_span:
                span.end()
            return
        payload = _trace.dumps_compact(redacted)
        if self._own_span:
            span.set_attribute(_trace.ATTR_EVENT, payload)
            span.end()
        elif span.is_recording():
            span.set_attribute(_trace.ATTR_EVENT, payload)
        else:
            # The outer instrumentation ended its span before the body was read (a stream):
            # carry the event on a child so it still belongs to the call.
            late = self.runtime.tracer.start_span(
                "agenttrace.event",
                context=trace.set_span_in_context(span),
                attributes={_trace.ATTR_SEQ: self.seq, _trace.ATTR_EVENT: payload},
            )
            late.end()

    def _served_event(self, event: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
        """A replayed call's event: what was served is the recorded answer, already redacted."""
        if recorded.get("response") is not None:
            event["response"] = recorded["response"]
        error = recorded.get("error") or self._error
        if error is not None:
            event["error"] = error
        answer_paths = [p for p in recorded.get("redacted", ()) if not p.startswith("request")]
        event["redacted"] = sorted(set(self._request_redacted).union(answer_paths))
        return event

    def _complete_response(self, event: dict[str, Any]) -> None:
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
                    {"base64": _b64(data)}
                    if "body_encoding" in response
                    else _body.encode_body(data, ctype)
                )
            event["response"] = response
        if self._error is not None:
            event["error"] = self._error


def _claimed(span: trace.Span) -> bool:
    """The outer span already carries an exchange: requests follows a redirect inside the one
    span of its first call, so the next hop gets a span of its own instead of overwriting it."""
    attributes = getattr(span, "attributes", None) or {}
    return _trace.ATTR_SEQ in attributes


def _s(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


# -- stream tees shared by instrumentors ----------------------------------------------------------


def tee(chunks: Iterator[bytes], exchange: Exchange) -> Iterator[bytes]:
    """Yield the client's chunks unchanged, reporting each as the caller reads it."""
    try:
        for data in chunks:
            exchange.chunk(data)
            yield data
    except GeneratorExit:
        raise
    except BaseException as exc:
        exchange.fail(exc)
        raise
    finally:
        exchange.close()


async def atee(chunks: AsyncIterator[bytes], exchange: Exchange) -> AsyncIterator[bytes]:
    try:
        async for data in chunks:
            exchange.chunk(data)
            yield data
    except GeneratorExit:
        raise
    except BaseException as exc:
        exchange.fail(exc)
        raise
    finally:
        exchange.close()
