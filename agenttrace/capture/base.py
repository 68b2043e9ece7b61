"""What every intercepted I/O shares, whatever its kind: where it belongs (seq, step, run, span),
when it started, the tool call whose body made it, and how the client's own error is recorded.

An HTTP :class:`~agenttrace.capture.Exchange`, a websocket or MCP
:class:`~agenttrace.capture.MessageSession` and a :class:`~agenttrace.capture.ToolRun` are each a
``Capture``: the mode that began it is its owner and receives the finished event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry.trace import Span, Status, StatusCode

from .. import _context
from .errors import error_record

logger = logging.getLogger("agenttrace")


class CaptureOwner(Protocol):
    """Who decided what happens to a capture, and so what becomes of its event."""

    def finish(self, capture: Any, event: dict[str, Any]) -> None:
        """The capture ended: ``event`` is complete (unredacted for a live one)."""

    def scrub(self, text: str) -> str:
        """Free text (an error message) as it may appear on a span."""


class Capture:
    """One intercepted I/O from its start to its event."""

    kind = ""

    def __init__(
        self,
        owner: Any,
        *,
        seq: int,
        step: str | None,
        rules: Any,
        run: Any,
        span: Span,
        own_span: bool = True,
    ) -> None:
        self.owner = owner
        self.seq = seq
        self.step = step
        self.rules = rules
        self.run = run
        self.span = span
        self.own_span = own_span  # False: we enrich an outer instrumentation's CLIENT span
        self.in_tool = _context.in_tool()  # made by a tool's body: not expected in replay
        self._started = time.perf_counter()
        self._error: dict[str, Any] | None = None
        self._done = False

    @contextmanager
    def sending(self, phase: str | None = None) -> Iterator[None]:
        """Wrap the real I/O: layers below are not captured again; an exception is recorded
        (``phase`` says which call raised it, so replay raises it there too)."""
        token = _context.enter_call()
        try:
            yield
        except BaseException as exc:
            self.fail(exc, phase=phase)
            raise
        finally:
            _context.exit_call(token)

    def fail(self, exc: BaseException, phase: str | None = None) -> None:
        """The I/O failed: record the error (and mark the span), then complete it."""
        if self._done:
            return
        self.record_error(exc, phase)
        self.close()

    def record_error(self, exc: BaseException, phase: str | None = None) -> None:
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

    def close(self) -> None:
        """The I/O is over: complete the event and hand it to the owner."""
        if self._done:
            return
        self._done = True
        try:
            self._finish()
        except Exception:
            logger.exception("agenttrace: could not record a %s event", self.kind)

    def _finish(self) -> None:
        raise NotImplementedError

    def event_head(self) -> dict[str, Any]:
        """The fields every event starts with."""
        event: dict[str, Any] = {
            "seq": self.seq,
            "kind": self.kind,
            "step": self.step,
            "span_id": format(self.span.get_span_context().span_id, "016x"),
        }
        if self.in_tool is not None:
            event["in_tool"] = self.in_tool
        return event

    def duration_ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000.0, 3)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000.0
