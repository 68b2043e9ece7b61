"""The Player: replay mode. The design card's **replay span processor**, with the instrumentors
acting as **mock instrumentors**.

It serves each intercepted call (and entropy draw, DNS lookup) from the recording, hands what
diverges to the governance gate, and owns the served/unplayed bookkeeping. As a span processor it
receives the replayed run's spans and keeps them for the replayed run's local document; a served
call's span skips the SDK altogether (:class:`ReplaySpan`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from .. import _context
from .._body import encode_body, header
from .._redaction import Redactor
from .._runs import RunHandle, Runs
from ..capture import (
    Answer,
    Capture,
    Exchange,
    HttpCall,
    MessageSession,
    ServedExchange,
    ServedSession,
    ServedTool,
    SessionCall,
    ToolCall,
    ToolRun,
    messages,
    tools,
)
from ..capture.entropy import current_flow, dns_from_json
from ..capture.exchange import span_attributes
from ..capture.messages import session_key
from ..governance import Governance
from ..record import Recorder
from ..record.recorder import outer_client_span, where
from . import divergence
from .clock import ReplayClock
from .engine import ReplayEngine
from .span import ReplaySpan


class _PassThrough(Recorder):
    """Relaxed replay: a call with no recorded match goes live and is recorded as new; while it
    runs, its sockets are expected."""

    def __init__(self, runs: Runs, redactor: Redactor, gate: Governance) -> None:
        super().__init__(runs, redactor)
        self._gate = gate

    def finish(self, exchange: Exchange, event: dict[str, Any]) -> None:
        try:
            super().finish(exchange, event)
        finally:
            self._gate.passthrough -= 1


class ReplaySpanProcessor(SpanProcessor):
    """Serve from the recording under a governance gate; collect the replayed run's spans."""

    def __init__(
        self,
        engine: ReplayEngine,
        runs: Runs,
        redactor: Redactor,
        gate: Governance,
        store: Any,
        started_ns: int | None = None,
    ) -> None:
        """``started_ns``: the recorded run's start, where a clock with no recorded reads
        starts (default: now)."""
        self.engine = engine
        now = time.time_ns()
        self.clock = ReplayClock(engine.clock, now if started_ns is None else started_ns, now)
        self.runs = runs
        self.redactor = redactor
        self.gate = gate
        self.store = store  # the local store of replayed runs (exporters.local.LocalStore)
        self._live = _PassThrough(runs, redactor, gate)
        self._open: dict[int, Capture] = {}

    # -- HTTP ----------------------------------------------------------------------------------

    def begin_http(self, call: HttpCall) -> Exchange:
        step = _context.current_step()
        step_name = step.name if step else None
        rules = _context.current_rules()
        recorded = self.engine.take_exact(call.method, call.url, call.body)
        if recorded is not None:
            # The recorded request, already redacted, is the very same call.
            request = recorded["request"]
            paths = [p for p in recorded.get("redacted", ()) if p.startswith("request")]
        else:
            live = {
                "method": call.method.upper(),
                "url": call.url,
                "headers": [[k, v] for k, v in call.headers],
                "body": encode_body(call.body or b"", header(call.headers, "content-type")),
            }
            # Redacted as at record time, so the same form keys the lookup.
            request, paths = self.redactor.request(live, rules)
            recorded = self.engine.take(request)
            if recorded is None:
                self.gate.divergence(divergence.unrecorded_call(self.engine, request, step_name))
                self.gate.passthrough += 1
                return self._live.exchange(call, request, paths, step_name, rules)
        if recorded.get("dropped"):
            self.gate.divergence(divergence.dropped_answer(recorded))
        run = self.runs.current()
        seq = self.runs.next_seq()
        span, own = self._open_span(call, request["url"], seq, run)
        exchange = ServedExchange(
            self,
            call,
            Answer(recorded),
            seq=seq,
            step=step_name,
            rules=rules,
            request=request,
            request_redacted=paths,
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
        attributes = span_attributes(call, url, seq)
        parent = self.runs.parent_span(run)
        if parent is not None:
            return ReplaySpan(self.store, call.method, parent.get_span_context(), attributes), True
        span = self.runs.tracer.start_span(
            call.method,
            context=self.runs.parent_context(run),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return span, True

    def parent_context(self) -> Context | None:
        return self.runs.parent_context()

    # -- websocket and MCP sessions -----------------------------------------------------------------

    def begin_session(self, call: SessionCall) -> MessageSession:
        step = _context.current_step()
        step_name = step.name if step else None
        fields = self.redactor.event({"kind": call.kind, **call.fields}, _context.current_rules())
        key = session_key(call.kind, fields or call.fields)
        recorded = self.engine.take_session(call.kind, key)
        if recorded is None:
            self.gate.divergence(
                divergence.unrecorded_session(self.engine, call.kind, key, step_name)
            )
            self.gate.passthrough += 1
            return self._live.begin_session(call)
        session = ServedSession(
            self, call, recorded, **where(self.runs, self._start_span, messages.span_start, call)
        )
        self._open[id(session)] = session
        return session

    def different_message(
        self,
        session: ServedSession,
        index: int,
        expected: dict[str, Any],
        actual: dict[str, Any],
    ) -> None:
        self.gate.divergence(divergence.message_differs(_label(session), index, expected, actual))

    def unrecorded_message(
        self, session: ServedSession, index: int, actual: dict[str, Any]
    ) -> None:
        self.gate.divergence(divergence.message_unrecorded(_label(session), index, actual))

    def recording_ended(self, session: ServedSession, what: str) -> None:
        self.gate.divergence(divergence.session_ended(_label(session), what))

    # -- tools ---------------------------------------------------------------------------------------

    def begin_tool(self, call: ToolCall) -> ToolRun:
        step = _context.current_step()
        args, paths = self.redactor.payload(call.args, _context.current_rules())
        recorded = self.engine.take_tool(call.name, args)
        if recorded is None or recorded.get("unrecordable") or recorded.get("dropped"):
            if recorded is None:
                message = divergence.unrecorded_tool(
                    self.engine, call.name, args, step.name if step else None
                )
            else:
                message = divergence.unreplayable_tool(recorded)
            self.gate.divergence(message)
            self.gate.passthrough += 1  # relaxed: the body runs, and its I/O is expected
            return self._live.begin_tool(call)
        run = ServedTool(
            self,
            call,
            recorded,
            args=args,
            redacted=tools.argument_paths(paths),
            **where(self.runs, self._start_span, tools.span_start, call, SpanKind.INTERNAL),
        )
        self._open[id(run)] = run
        return run

    def _start_span(
        self, name: str, attributes: dict[str, Any], kind: SpanKind, run: RunHandle | None
    ) -> Any:
        """A served capture's span: straight to the replay store when it has a parent."""
        parent = self.runs.parent_span(run)
        if parent is not None:
            return ReplaySpan(self.store, name, parent.get_span_context(), attributes, kind.name)
        return self.runs.tracer.start_span(
            name, context=self.runs.parent_context(run), kind=kind, attributes=attributes
        )

    # -- ExchangeOwner (served calls) --------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return self.redactor.text(text)

    def finish(self, capture: Capture, event: dict[str, Any]) -> None:
        self._open.pop(id(capture), None)
        if capture.run is None:
            self._live.publish(capture, event)
            return
        # The replayed run only goes to the local store, so its events ride on the run's root
        # span (like entropy) and are serialised once, when the run is written.
        capture.run.events.append(event)
        if capture.own_span:
            capture.span.end()

    def close_open(self) -> None:
        for capture in list(self._open.values()):
            capture.close()
        self._live.close_open()

    # -- entropy and DNS ---------------------------------------------------------------------------

    def entropy_bytes(self, source: str, size: int, real: Callable[[int], bytes]) -> bytes:
        data = self.engine.entropy(source, size, current_flow())
        if data is None:
            self.gate.escape(
                f"{source}({size}) was called more often than in the recording, so there is no "
                "recorded entropy to serve; real randomness would make the run diverge."
            )
            data = real(size)
        self._live.log_entropy(source, data)
        return data

    def entropy_seed(self, real: Callable[[], int]) -> int:
        value = self.engine.seed()
        if value is None:
            self.gate.escape(
                "random.Random() / random.seed() without a seed was called more often than in "
                "the recording."
            )
            value = real()
        self._live.log_seed(value)
        return value

    def dns_lookup(self, host: str, port: Any, real: Callable[[], Any]) -> Any:
        recorded = self.engine.dns(host, port)
        if recorded is not None:
            result = dns_from_json(recorded)
        else:
            self.gate.escape(
                f"DNS lookup of {host}:{port} outside an intercepted HTTP call is not in the "
                "recording."
            )
            with self.gate.exempt():
                result = real()
        self._live.log_dns(host, port, result)
        return result

    def wall_clock(self, real_ns: int) -> int:
        flow = current_flow()
        value = self.clock.read(flow, real_ns)
        self.runs.clock_read(flow, value)
        return value

    def uuid_node(self, real: Callable[[], int]) -> int:
        node = self.engine.node
        if node is None:  # a recording made before the node was recorded: this machine's
            with self.gate.exempt():
                node = real()
        self._live.log_node(node)
        return node

    # -- the end of the replay ---------------------------------------------------------------------

    def unplayed(self) -> list[dict[str, Any]]:
        return self.engine.unplayed()

    def report(self) -> bool:
        """The end-of-replay report (on stderr); True when the run must fail."""
        unplayed = self.engine.unplayed()
        if unplayed:
            self.gate.note(divergence.never_made(unplayed))
        return self.gate.report()

    # -- SpanProcessor: the replayed run's spans go to the replay store ----------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.store.processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.store.processor.on_end(span)

    def shutdown(self) -> None:
        self.store.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.store.processor.force_flush(timeout_millis)


def _label(session: MessageSession) -> str:
    return f"{session.call.kind} session {session.call.label}"
