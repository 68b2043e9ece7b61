"""The Recorder: record mode. Every intercepted call goes live and becomes a redacted event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.trace import SpanKind

from .. import _context, _trace
from .._body import encode_body, header
from .._redaction import Redactor
from .._runs import RunHandle, Runs
from ..capture import (
    Capture,
    Exchange,
    HttpCall,
    MessageSession,
    SessionCall,
    ToolCall,
    ToolRun,
    messages,
    tools,
)
from ..capture.entropy import current_flow, dns_to_json, encode
from ..capture.exchange import span_attributes


class Recorder:
    """Goes live and records. Also what a relaxed replay records its pass-through calls with."""

    def __init__(self, runs: Runs, redactor: Redactor) -> None:
        self.runs = runs
        self.redactor = redactor
        self._open: dict[int, Capture] = {}  # dict set/pop are atomic under the GIL
        self._node_logged: int | None = None

    # -- HTTP --------------------------------------------------------------------------------------

    def begin_http(self, call: HttpCall) -> Exchange:
        step = _context.current_step()
        rules = _context.current_rules()
        request = {
            "method": call.method.upper(),
            "url": call.url,
            "headers": [[k, v] for k, v in call.headers],
            "body": encode_body(call.body or b"", header(call.headers, "content-type")),
        }
        # Redacted once: the same form keys the replay lookup and goes into the event.
        redacted, paths = self.redactor.request(request, rules)
        return self.exchange(call, redacted, paths, step.name if step else None, rules)

    def exchange(
        self,
        call: HttpCall,
        request: dict[str, Any],
        redacted_paths: list[str],
        step: str | None,
        rules: Any,
    ) -> Exchange:
        """A live exchange for an already redacted request."""
        run = self.runs.current()
        seq = self.runs.next_seq()
        span, own = self._open_span(call, request["url"], seq, run)
        exchange = Exchange(
            self,
            call,
            seq=seq,
            step=step,
            rules=rules,
            request=request,
            request_redacted=redacted_paths,
            run=run,
            span=span,
            own_span=own,
        )
        self._open[id(exchange)] = exchange
        return exchange

    def _open_span(
        self, call: HttpCall, url: str, seq: int, run: RunHandle | None
    ) -> tuple[trace.Span, bool]:
        outer = outer_client_span(self.runs, call, seq)
        if outer is not None:
            return outer, False
        span = self.runs.tracer.start_span(
            call.method,
            context=self.runs.parent_context(run),
            kind=SpanKind.CLIENT,
            attributes=span_attributes(call, url, seq),
        )
        return span, True

    def parent_context(self) -> Context | None:
        return self.runs.parent_context()

    # -- message sessions and tools --------------------------------------------------------------

    def begin_session(self, call: SessionCall) -> MessageSession:
        session = MessageSession(
            self, call, **where(self.runs, self._start_span, messages.span_start, call)
        )
        self._open[id(session)] = session
        return session

    def begin_tool(self, call: ToolCall) -> ToolRun:
        rules = _context.current_rules()
        args, paths = self.redactor.payload(call.args, rules)
        run = ToolRun(
            self,
            call,
            args=args,
            redacted=tools.argument_paths(paths),
            **where(self.runs, self._start_span, tools.span_start, call, SpanKind.INTERNAL),
        )
        self._open[id(run)] = run
        return run

    def _start_span(
        self, name: str, attributes: dict[str, Any], kind: SpanKind, run: RunHandle | None
    ) -> Any:
        return self.runs.tracer.start_span(
            name, context=self.runs.parent_context(run), kind=kind, attributes=attributes
        )

    # -- CaptureOwner ------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return self.redactor.text(text)

    def finish(self, capture: Capture, event: dict[str, Any]) -> None:
        self._open.pop(id(capture), None)
        redacted = self.redactor.event(event, capture.rules, request_done=capture.kind == "http")
        self.publish(capture, redacted)

    def publish(self, capture: Capture, event: dict[str, Any] | None) -> None:
        """Put a finished event of any kind on its span (the trace document is rebuilt from
        spans): the one way every completed event leaves the Recorder."""
        payload = _trace.dumps_compact(event)
        span = capture.span
        if capture.own_span:
            span.set_attribute(_trace.ATTR_EVENT, payload)
            span.end()
        elif span.is_recording():
            span.set_attribute(_trace.ATTR_EVENT, payload)
        else:
            # The outer instrumentation ended its span before the body was read (a stream):
            # carry the event on a child so it still belongs to the call.
            late = self.runs.tracer.start_span(
                "agenttrace.event",
                context=trace.set_span_in_context(span),
                attributes={_trace.ATTR_SEQ: capture.seq, _trace.ATTR_EVENT: payload},
            )
            late.end()

    def close_open(self) -> None:
        """Complete the streams and sessions the agent never closed, so they still get
        recorded."""
        for capture in list(self._open.values()):
            capture.close()

    # -- entropy and DNS -----------------------------------------------------------------------------

    def entropy_bytes(self, source: str, size: int, real: Callable[[int], bytes]) -> bytes:
        data = real(size)
        self.log_entropy(source, data)
        return data

    def log_entropy(self, source: str, data: bytes) -> None:
        self.runs.add_event(
            {"kind": "entropy", "source": source, "data": encode(data), "flow": current_flow()}
        )

    def entropy_seed(self, real: Callable[[], int]) -> int:
        value = real()
        self.log_seed(value)
        return value

    def log_seed(self, value: int) -> None:
        self.runs.add_event({"kind": "entropy", "source": "random.seed", "value": str(value)})

    def dns_lookup(self, host: str, port: Any, real: Callable[[], Any]) -> Any:
        result = real()
        self.log_dns(host, port, result)
        return result

    def wall_clock(self, real_ns: int) -> int:
        self.runs.clock_read(current_flow(), real_ns)
        return real_ns

    def uuid_node(self, real: Callable[[], int]) -> int:
        value = real()
        self.log_node(value)
        return value

    def log_node(self, value: int) -> None:
        # A fact of the machine, read once per process (uuid caches it): logged once.
        if self._node_logged != value:
            self._node_logged = value
            self.runs.add_event({"kind": "entropy", "source": "uuid.getnode", "value": str(value)})

    def log_dns(self, host: str, port: Any, result: Any) -> None:
        self.runs.add_event(
            {"kind": "dns", "host": host, "port": port, "result": dns_to_json(result)}
        )


def where(
    runs: Runs,
    start_span: Callable[[str, dict[str, Any], SpanKind, RunHandle | None], Any],
    span_start: Callable[[Any, int], Any],
    call: Any,
    kind: SpanKind = SpanKind.CLIENT,
) -> dict[str, Any]:
    """Where a new session or tool call belongs: its seq, step, rules, run and a span of its own
    (``span_start`` names it, ``start_span`` opens it)."""
    step = _context.current_step()
    run = runs.current()
    seq = runs.next_seq()
    name, attributes = span_start(call, seq)
    return {
        "seq": seq,
        "step": step.name if step else None,
        "rules": _context.current_rules(),
        "run": run,
        "span": start_span(name, attributes, kind, run),
    }


def outer_client_span(runs: Runs, call: HttpCall, seq: int) -> trace.Span | None:
    """The CLIENT span an outer HTTP instrumentation (opentelemetry-instrumentation-requests)
    opened for this call, enriched with our sequence number; we do not nest a second one."""
    current = trace.get_current_span()
    if (
        is_http_instrumentation_enabled()
        or not current.get_span_context().is_valid
        or _claimed(current)
        # a span outside our runs (the app instrumented requests itself, after init()) would
        # take the event out of the run's trace
        or not runs.owns_trace(current.get_span_context().trace_id)
    ):
        return None
    if current.is_recording():
        current.set_attributes({_trace.ATTR_SEQ: seq, "agenttrace.client": call.client})
    return current


def _claimed(span: trace.Span) -> bool:
    """The outer span already carries an exchange: requests follows a redirect inside the one
    span of its first call, so the next hop gets a span of its own instead of overwriting it."""
    attributes = getattr(span, "attributes", None) or {}
    return _trace.ATTR_SEQ in attributes
