"""The CLIENT span of a replayed call.

A replay sends nothing anywhere: its spans only go into the replayed run's local document. So a
served call skips the SDK's span machinery — sampler, attribute limits, processors; about 40 µs,
most of what a replayed call costs — and hands the local store a finished span record, the same
record the store makes of an SDK span.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from .. import _trace
from .._ids import ID_GENERATOR


class ReplaySpan:
    """The part of the ``opentelemetry.trace.Span`` interface an exchange uses."""

    def __init__(
        self,
        store: Any,
        name: str,
        parent: SpanContext,
        attributes: dict[str, Any],
        kind: str = "CLIENT",
    ):
        self._store = store
        self._kind = kind
        self._name = name
        self._parent = parent
        self._context = SpanContext(
            parent.trace_id, ID_GENERATOR.generate_span_id(), False, TraceFlags(TraceFlags.SAMPLED)
        )
        self._attributes = attributes
        self._status = Status(StatusCode.UNSET)
        self._start_ns = time.time_ns()
        self._ended = False

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self._attributes.update(attributes)

    def set_status(self, status: Status) -> None:
        self._status = status

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        record = _trace.span_record(
            trace_id=format(self._context.trace_id, "032x"),
            span_id=format(self._context.span_id, "016x"),
            parent_id=format(self._parent.span_id, "016x"),
            name=self._name,
            kind=self._kind,
            start_ns=self._start_ns,
            end_ns=time.time_ns(),
            status=self._status.status_code.name.lower(),
            status_message=self._status.description,
            attributes=self._attributes,
        )
        self._store.add_record(self._context.trace_id, record)
