"""The runs of a session: one trace each, which run a call or step belongs to, its event log."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _context, _trace


class RunHandle:
    """One agent run: a root span and the non-HTTP events recorded while it is open."""

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        implicit: bool,
        facts: dict[str, Any],
        scrub: Callable[[str], str],
    ) -> None:
        self.name = name
        self.implicit = implicit
        self.events: list[dict[str, Any]] = []
        self.clock: dict[str, list[int]] = {}  # wall-clock reads (ns) per flow, in order
        self.failed: str | None = None
        self.ended = False
        self._scrub = scrub
        # An implicit run with nothing in it is not written when explicit runs held the work.
        self.discard_if_empty = False
        self.span = tracer.start_span(
            name,
            context=otel_context.Context(),  # a run is always a new trace
            kind=SpanKind.INTERNAL,
            attributes={_trace.ATTR_RUN_NAME: name, _trace.ATTR_RUN: json.dumps(facts)},
        )
        self.trace_id = format(self.span.get_span_context().trace_id, "032x")

    def fail(self, message: str) -> None:
        self.failed = message

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.events:
            self.span.set_attribute(_trace.ATTR_EVENTS, _trace.dumps_compact(self.events))
        if self.failed:
            self.span.set_status(Status(StatusCode.ERROR, self._scrub(self.failed)))
        else:
            self.span.set_status(Status(StatusCode.OK))
        self.span.end()


class Runs:
    """Open runs (innermost last), the implicit run, and the run-wide sequence numbers."""

    def __init__(
        self,
        tracer: trace.Tracer,
        default_name: str,
        facts: dict[str, Any],
        scrub: Callable[[str], str],
    ) -> None:
        self.tracer = tracer
        self.facts = facts
        self._default_name = default_name
        self._scrub = scrub
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._open: list[RunHandle] = []
        self._implicit: RunHandle | None = None
        self._explicit = 0
        self._pending: list[dict[str, Any]] = []  # events seen before any run opened
        self._pending_clock: dict[str, list[int]] = {}
        self._closed = False
        self.watchers: list[Callable[[RunHandle], None]] = []  # told of every run that opens

    def next_seq(self) -> int:
        return next(self._seq)  # itertools.count: atomic under the GIL, no lock on the hot path

    # -- opening and closing ---------------------------------------------------------------------

    def open(self, name: str | None = None, implicit: bool = False) -> RunHandle:
        run = RunHandle(self.tracer, name or self._default_name, implicit, self.facts, self._scrub)
        with self._lock:
            self._explicit += 0 if implicit else 1
            self._open.append(run)
            # Entropy drawn before any run (module-level code after init) belongs to the run that
            # follows: replaying that run re-executes the same code.
            run.events, self._pending = self._pending, []
            run.clock, self._pending_clock = self._pending_clock, {}
        for watch in self.watchers:
            watch(run)
        return run

    def close(self, run: RunHandle) -> None:
        with self._lock:
            if run in self._open:
                self._open.remove(run)
            clock, run.clock = run.clock, {}
        if clock:
            run.events.append(clock_event(self.next_seq(), clock))
        run.end()

    def close_all(self, failure: str | None) -> None:
        """End every open run (the session stops); ``failure`` marks those still unfailed.

        A process that recorded no run at all still gets its (empty) implicit run, so the run
        can be found and replayed like any other.
        """
        with self._lock:
            if self._implicit is None and (self._pending or not self._explicit):
                self._implicit = self.open(implicit=True)
            if self._implicit is not None:
                self._implicit.discard_if_empty = self._explicit > 0
            runs = list(reversed(self._open))
            self._closed = True
        for run in runs:
            if failure and run.failed is None:
                run.fail(failure)
            self.close(run)

    # -- where things belong -------------------------------------------------------------------

    def in_context(self) -> RunHandle | None:
        """The run of the current span, else the innermost open explicit run, else the open
        implicit run; never opens one."""
        ctx = trace.get_current_span().get_span_context()
        with self._lock:
            if ctx.is_valid:
                for run in reversed(self._open):
                    if run.span.get_span_context().trace_id == ctx.trace_id:
                        return run
            explicit = [r for r in self._open if not r.implicit]
            if explicit:
                return explicit[-1]
            implicit = self._implicit
            return implicit if implicit is not None and not implicit.ended else None

    def current(self) -> RunHandle | None:
        """The run a call or step belongs to: ``in_context``, else the implicit run, opened on
        first use (so a process that only uses explicit runs does not write an empty extra
        trace)."""
        run = self.in_context()
        if run is not None or self._closed:
            return run
        with self._lock:
            if self._implicit is None:
                self._implicit = self.open(implicit=True)
            return self._implicit

    def owns_trace(self, trace_id: int) -> bool:
        """Whether ``trace_id`` is the trace of an open run (where what we record must go)."""
        with self._lock:
            return any(r.span.get_span_context().trace_id == trace_id for r in self._open)

    def parent_span(self, run: RunHandle | None = None) -> trace.Span | None:
        """Where a new span hangs: the current span if it is in one of our runs, else the run.

        A run is one trace, so what it records must be in that trace: not in a thread the agent
        started without context, nor under a span of the app or of another instrumentation that
        belongs to no run (opentelemetry-instrumentation-httpx opens its CLIENT span around
        ours, in a trace of its own when no run is current).
        """
        current = trace.get_current_span()
        context = current.get_span_context()
        if context.is_valid and self.owns_trace(context.trace_id):
            return current
        run = run or self.current()
        return run.span if run is not None else None

    def parent_context(self, run: RunHandle | None = None) -> otel_context.Context | None:
        """``parent_span`` as the context to start a span in (None: the current context)."""
        parent = self.parent_span(run)
        if parent is None or parent is trace.get_current_span():
            return None
        return trace.set_span_in_context(parent, otel_context.get_current())

    def clock_read(self, flow: str, value_ns: int) -> None:
        """Log one wall-clock read of the agent's, in the run it belongs to."""
        run = self.in_context()
        with self._lock:
            clock = run.clock if run is not None else self._pending_clock
            reads = clock.get(flow)
            if reads is None:
                clock[flow] = [value_ns]
            else:
                reads.append(value_ns)

    def add_event(self, event: dict[str, Any]) -> None:
        """Log a non-HTTP event (entropy, DNS) in the current run, numbered and placed."""
        event["seq"] = self.next_seq()
        step = _context.current_step()
        event["step"] = step.name if step else None
        tool = _context.in_tool()
        if tool is not None:  # made by a tool's body, which a replay does not run
            event["in_tool"] = tool
        run = self.in_context()
        with self._lock:
            (run.events if run is not None else self._pending).append(event)


def clock_event(seq: int, clock: dict[str, list[int]]) -> dict[str, Any]:
    """A run's wall-clock reads as one compact event: per flow, the first read in ns, then the
    difference from the previous read of that flow."""
    flows = {}
    for flow, reads in clock.items():
        flows[flow] = [reads[0]] + [b - a for a, b in zip(reads, reads[1:], strict=False)]
    return {"seq": seq, "kind": "clock", "step": None, "flows": flows}


def clock_reads(event: dict[str, Any]) -> dict[str, list[int]]:
    """The reads of a clock event, per flow, in ns (inverse of ``clock_event``)."""
    out = {}
    for flow, deltas in (event.get("flows") or {}).items():
        total, reads = 0, []
        for delta in deltas:
            total += int(delta)
            reads.append(total)
        out[flow] = reads
    return out
