"""A run's steps and events placed in time: the rows of the run page's waterfall.

The tree is ``_outline``'s (what ``agenttrace show`` prints), folded the way ``show`` folds it
(runs of entropy/DNS facts, the middle of a polling loop) unless every row is asked for. Each
row gets its offset from the run's start and its duration, from the spans of the document; an
event without a span (a fact) sits at the time of the event before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import _trace
from ..._console import Fold, duration, folded
from ..._outline import EventLine, Outline, StepNode

#: rows shown before the page says how many more there are: folded, and with every row
MAX_ROWS = 2000
MAX_ALL_ROWS = 20_000
_SCALE = 1000  # bar coordinates: the run's whole time is 0..1000


@dataclass
class Row:
    depth: int
    item: StepNode | EventLine | Fold
    start_ms: float | None  # from the run's start
    duration_ms: float | None

    @property
    def kind(self) -> str:
        if isinstance(self.item, StepNode):
            return "step"
        return "fold" if isinstance(self.item, Fold) else "event"

    def bar(self, total_ms: float) -> tuple[float, float] | None:
        """(x, width) in 0..1000 for the row's bar; None when its time is unknown."""
        if self.start_ms is None or total_ms <= 0:
            return None
        x = min(max(self.start_ms / total_ms * _SCALE, 0.0), _SCALE)
        width = (self.duration_ms or 0.0) / total_ms * _SCALE
        return round(x, 2), round(max(min(width, _SCALE - x), 1.5), 2)


@dataclass
class Waterfall:
    rows: list[Row]
    total_ms: float  # the length of the time axis
    more_rows: int = 0  # rows left out (past MAX_ROWS)
    folded: int = 0  # events folded into fold rows
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (x in 0..1000, label)


def waterfall(
    document: Mapping[str, Any],
    view: Outline,
    *,
    every_row: bool = False,
    max_rows: int | None = None,
) -> Waterfall:
    """The waterfall of a checked document and its outline: folded as ``show`` folds, or every
    row; at most ``max_rows`` (default MAX_ROWS folded, MAX_ALL_ROWS with every row)."""
    spans = {s.get("span_id"): s for s in document.get("spans") or () if isinstance(s, Mapping)}
    origin = _trace.parse_time((document.get("run") or {}).get("started_at"))
    starts = [t for t in (_trace.parse_time(s.get("start")) for s in spans.values()) if t]
    if origin is None and starts:
        origin = min(starts)

    def offset(value: Any) -> float | None:
        moment = _trace.parse_time(value)
        if moment is None or origin is None:
            return None
        return (moment - origin).total_seconds() * 1000.0

    event_span = {}
    for event in document.get("events") or ():
        if isinstance(event.get("seq"), int):
            event_span[event["seq"]] = event.get("span_id")
    rows: list[Row] = []
    state = {"last": 0.0, "folded": 0, "more": 0}
    limit = max_rows or (MAX_ALL_ROWS if every_row else MAX_ROWS)

    def add(row: Row) -> None:
        if len(rows) >= limit:
            state["more"] += 1
        else:
            rows.append(row)

    def place(item: StepNode | EventLine | Fold, depth: int) -> None:
        if isinstance(item, StepNode):
            span = spans.get(item.span_id) or {}
            start = offset(span.get("start"))
            add(Row(depth, item, start, item.duration_ms))
            if start is not None:
                state["last"] = start
            for child in item.children if every_row else folded(item.children):
                place(child, depth + 1)
            return
        if isinstance(item, Fold):
            state["folded"] += item.count
            first = _event_start(item.lines[0], spans, event_span, offset)
            start = first if first is not None else state["last"]
            last = item.lines[-1]
            end = _event_start(last, spans, event_span, offset)
            end = (end or start) + (last.duration_ms or 0.0)
            add(Row(depth, item, start, max(end - start, 0.0)))
            state["last"] = start
            return
        start = _event_start(item, spans, event_span, offset)
        if start is None:
            start = state["last"]  # a fact: when the event before it happened
        else:
            state["last"] = start
        add(Row(depth, item, start, item.duration_ms))

    for child in view.root.children if every_row else folded(view.root.children):
        place(child, 0)
    ends = [r.start_ms + (r.duration_ms or 0.0) for r in rows if r.start_ms is not None]
    total = max([view.run.get("wall_ms") or 0.0, *ends, 0.0])
    return Waterfall(rows, total, state["more"], state["folded"], _ticks(total))


def _event_start(
    line: EventLine, spans: Mapping[Any, Any], event_span: Mapping[int, Any], offset: Any
) -> float | None:
    span = spans.get(event_span.get(line.seq))
    return offset(span.get("start")) if span else None


def _ticks(total_ms: float, count: int = 2) -> list[tuple[float, str]]:
    if total_ms <= 0:
        return []
    return [(i / count * _SCALE, duration(total_ms * i / count)) for i in range(count + 1)]
