"""A run as a tree of steps and I/O, one summary line of facts per event.

What ``agenttrace show`` prints (and ``--json`` gives machines), and what the web viewer lays
out. Pure: built from a trace document, never raising on what a document may hold — unknown
event kinds, missing fields, spans of steps that never ended (a killed run).

Steps are the document's INTERNAL spans with ``agenttrace.step.type``; other spans (an SDK's own
spans, the CLIENT span of each call) are looked through. A call sits under the step that
encloses its span; an event without a span (entropy, DNS) sits under the step its ``step`` name
and its neighbours in sequence point to.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _trace
from ._body import json_value
from ._cost import RunTotals, call_cost, totals_of
from ._genai import LLMCall, Usage, parse_call
from .capture.messages import session_key

logger = logging.getLogger("agenttrace")


@dataclass
class EventLine:
    """One event, summarised."""

    seq: int
    kind: str
    step: str | None
    label: str  # what was called: method and URL, tool name, MCP methods, entropy source...
    status: str | None = None  # HTTP status, "ok", an error type; None for facts
    ok: bool = True
    duration_ms: float | None = None
    chunks: int | None = None  # streamed responses: chunks as read
    detail: str | None = None  # frame or message counts, DNS answers...
    llm: str | None = None  # "chat gpt-4o-mini" for an LLM call
    usage: Usage | None = None
    cost_usd: float | None = None
    redactions: int = 0
    error: str | None = None
    is_call: bool = True  # a call rather than a fact (see _trace.is_call)
    call: LLMCall | None = field(default=None, repr=False)  # the LLM call, read once

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "event", "seq": self.seq, "kind": self.kind}
        for name in ("step", "label", "status", "duration_ms", "chunks", "detail", "llm"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["ok"] = self.ok
        if self.usage is not None:
            out["usage"] = self.usage.as_dict()
        if self.cost_usd is not None:
            out["cost_usd"] = round(self.cost_usd, 10)
        out["redactions"] = self.redactions
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class StepNode:
    """A step (or the run itself, at the root) and what happened inside it, in order."""

    name: str
    step_type: str | None = None
    span_id: str | None = None
    status: str = "unset"
    duration_ms: float | None = None
    error: str | None = None
    ended: bool = True
    children: list[StepNode | EventLine] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "step", "name": self.name, "step_type": self.step_type}
        out.update(span_id=self.span_id, status=self.status, duration_ms=self.duration_ms)
        if self.error:
            out["error"] = self.error
        if not self.ended:
            out["ended"] = False
        out["children"] = [child.to_json() for child in self.children]
        return out

    def walk_events(self) -> Iterator[EventLine]:
        for child in self.children:
            if isinstance(child, StepNode):
                yield from child.walk_events()
            else:
                yield child


@dataclass
class Outline:
    trace_id: str
    run: dict[str, Any]  # name, status, started_at, ended_at, wall_ms, error, mode
    totals: RunTotals
    root: StepNode
    events: list[EventLine]  # every event in seq order (the tree holds the same objects)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "agenttrace.show/1",
            "trace_id": self.trace_id,
            "run": self.run,
            "totals": self.totals.to_json(),
            "tree": self.root.to_json(),
        }


def outline(document: Mapping[str, Any]) -> Outline:
    """The outline of a checked trace document (see ``_trace.load_document``)."""
    run = dict(document.get("run") or {})
    started = _trace.parse_time(run.get("started_at"))
    facts = {
        "name": run.get("name"),
        "status": run.get("status", "unset"),
        "started_at": run.get("started_at"),
        "ended_at": run.get("ended_at"),
        "wall_ms": _trace.elapsed_ms(run.get("started_at"), run.get("ended_at")),
        "error": run.get("error"),
        "mode": run.get("mode"),
    }
    events = list(document.get("events") or ())
    lines = [summarize(event, started) for event in events]
    root = _tree(document.get("spans") or [], events, lines, facts)
    return Outline(
        trace_id=str(document.get("trace_id") or ""),
        run=facts,
        totals=totals_of(
            sum(1 for line in lines if line.is_call),
            (line.call for line in lines if line.call is not None),
            started,
        ),
        root=root,
        events=lines,
    )


# -- one event ------------------------------------------------------------------------------------


def summarize(event: Mapping[str, Any], at: _dt.datetime | None = None) -> EventLine:
    """One event as a line of facts; an event this version cannot read still gets a line."""
    kind = str(event.get("kind") or "?")
    line = EventLine(
        seq=_int(event.get("seq")),
        kind=kind,
        step=event.get("step") if isinstance(event.get("step"), str) else None,
        label="",
        is_call=_trace.is_call(event),
    )
    try:
        line.duration_ms = _number(event.get("duration_ms"))
        redacted = event.get("redacted")
        line.redactions = len(redacted) if isinstance(redacted, list) else 0
        _SUMMARIES.get(kind, _summarize_other)(line, event)
        _error(line, event.get("error"))
        if kind == "http":
            _llm(line, event, at)
    except Exception:  # a malformed event is shown as what we could read, never a crash
        logger.debug("agenttrace: cannot summarise event %s", event.get("seq"), exc_info=True)
        line.label = line.label or kind
    return line


def _summarize_http(line: EventLine, event: Mapping[str, Any]) -> None:
    request = event.get("request") or {}
    line.label = f"{request.get('method', '?')} {request.get('url', '?')}"
    response = event.get("response")
    if isinstance(response, Mapping):
        status = response.get("status")
        line.status = str(status)
        line.ok = isinstance(status, int) and status < 400
        if isinstance(response.get("chunks"), list):
            line.chunks = len(response["chunks"])
        elif not line.ok:  # what the server said, when it said it the usual way
            message = _dig_message(json_value(response.get("body")))
            line.error = message[:200] if message else None


def _dig_message(body: Any) -> str | None:
    """The message of an API error body: {"error": {"message": ...}} or {"message": ...}."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    inner = error if isinstance(error, Mapping) else body
    message = inner.get("message")
    if isinstance(message, str):
        return message
    return error if isinstance(error, str) else None


def _llm(line: EventLine, event: Mapping[str, Any], at: _dt.datetime | None) -> None:
    call = parse_call(event)
    if call is None:
        return
    line.call = call
    line.llm = call.span_name
    if call.usage.reported():
        line.usage = call.usage
        line.cost_usd = call_cost(call, at)


def _summarize_tool(line: EventLine, event: Mapping[str, Any]) -> None:
    line.label = str(event.get("name") or "?")
    line.status = "ok"


def _summarize_websocket(line: EventLine, event: Mapping[str, Any]) -> None:
    request = event.get("request") or {}
    line.label = str(request.get("url") or event.get("url") or "?")
    frames = [f for f in event.get("frames") or () if isinstance(f, Mapping)]
    sent = sum(1 for f in frames if f.get("dir") == "send")
    line.detail = f"{len(frames)} frames ({sent} sent, {len(frames) - sent} received)"
    close = event.get("close")
    code = close.get("code") if isinstance(close, Mapping) else close
    line.status = f"closed {code}" if code is not None else "ok"


def _summarize_mcp(line: EventLine, event: Mapping[str, Any]) -> None:
    messages = [m for m in event.get("messages") or () if isinstance(m, Mapping)]
    methods: list[str] = []
    failed = False
    for message in messages:
        body = message.get("json")
        if not isinstance(body, Mapping):
            continue
        if message.get("dir") == "send" and isinstance(body.get("method"), str):
            name = body["method"]
            if name == "tools/call":
                name += f" {(body.get('params') or {}).get('name', '?')}"
            if name not in methods:
                methods.append(name)
        elif message.get("dir") == "recv" and body.get("error"):
            failed = True
    server = event.get("server")
    if isinstance(server, Mapping):  # {"command", "args"} or {"url"}: named as replay matches it
        server = session_key("mcp", dict(event))
    server = server or event.get("transport") or "mcp"
    line.label = f"{server}: {', '.join(methods) or 'no requests'}"
    line.detail = f"{len(messages)} messages"
    line.status, line.ok = ("error", False) if failed else ("ok", True)


def _summarize_entropy(line: EventLine, event: Mapping[str, Any]) -> None:
    source = str(event.get("source") or "?")
    if "data" in event:
        size = len(base64.b64decode(event["data"]))
        line.label = f"{source} {size} bytes"
    else:
        line.label = source


def _summarize_dns(line: EventLine, event: Mapping[str, Any]) -> None:
    line.label = f"{event.get('host', '?')}:{event.get('port', '?')}"
    result = event.get("result")
    if isinstance(result, list):
        line.detail = f"{len(result)} addresses"
    elif isinstance(result, Mapping) and result.get("error"):
        line.detail = f"error {result['error']}"


def _summarize_other(line: EventLine, event: Mapping[str, Any]) -> None:
    request = event.get("request") if isinstance(event.get("request"), Mapping) else {}
    for value in (
        event.get("name"),
        event.get("source"),
        request.get("url"),
        event.get("url"),
        event.get("method"),
    ):
        if isinstance(value, str) and value:
            line.label = value
            break
    else:
        line.label = line.kind
    if line.is_call:
        line.status = "ok"


def _summarize_clock(line: EventLine, event: Mapping[str, Any]) -> None:
    flows = event.get("flows")
    if not isinstance(flows, Mapping):
        _summarize_other(line, event)
        return
    reads = sum(len(v) for v in flows.values() if isinstance(v, list))
    line.label = f"{reads} wall-clock reads in {len(flows)} flow(s)"


_SUMMARIES = {
    "http": _summarize_http,
    "clock": _summarize_clock,
    "tool": _summarize_tool,
    "websocket": _summarize_websocket,
    "mcp": _summarize_mcp,
    "entropy": _summarize_entropy,
    "dns": _summarize_dns,
}


def _error(line: EventLine, error: Any) -> None:
    """A failed call: its status is the exception type, its error the message."""
    if isinstance(error, Mapping):
        line.status, line.ok = str(error.get("type") or "error"), False
        line.error = str(error["message"]) if error.get("message") else None
    elif isinstance(error, str) and error:
        line.status, line.ok, line.error = "error", False, error


# -- the tree -------------------------------------------------------------------------------------


def _tree(
    spans: list[Mapping[str, Any]],
    events: list[Mapping[str, Any]],
    lines: list[EventLine],
    run: Mapping[str, Any],
) -> StepNode:
    by_id = {s.get("span_id"): s for s in spans if isinstance(s, Mapping)}
    root_span = next(
        (
            s
            for s in spans
            if _trace.ATTR_RUN_NAME in (s.get("attributes") or {}) and not s.get("parent_id")
        ),
        None,
    )
    root = StepNode(
        name=str(run.get("name") or "run"),
        span_id=root_span.get("span_id") if root_span else None,
        status=str(run.get("status") or "unset"),
        duration_ms=run.get("wall_ms"),
        error=run.get("error"),
    )
    nodes: dict[Any, StepNode] = {}
    if root.span_id:
        nodes[root.span_id] = root
    for span in spans:
        attrs = span.get("attributes") or {}
        if _trace.ATTR_STEP_TYPE in attrs and span is not root_span:
            nodes[span.get("span_id")] = StepNode(
                name=str(span.get("name") or "?"),
                step_type=str(attrs[_trace.ATTR_STEP_TYPE]),
                span_id=span.get("span_id"),
                status=str(span.get("status") or "unset"),
                duration_ms=_trace.elapsed_ms(span.get("start"), span.get("end")),
                error=span.get("status_message"),
                ended=span.get("end") is not None,
            )

    def enclosing(span_id: Any) -> StepNode:
        """The step around a span: the nearest ancestor that is a step (or the run)."""
        span = by_id.get(span_id)
        for _ in range(len(by_id)):  # bounded: a malformed document may have a cycle
            if span is None:
                break
            parent = span.get("parent_id")
            if parent in nodes:
                return nodes[parent]
            span = by_id.get(parent)
        return root

    # Order: spans by start time; an event without a span at the time of the last event before
    # it that has one (it happened after that one), and in seq order among equals.
    when: list[float] = []
    earlier = float("-inf")
    for event in events:
        span = by_id.get(event.get("span_id"))
        start = _timestamp(span.get("start")) if span else None
        earlier = start if start is not None else earlier
        when.append(earlier)
    placed: list[tuple[float, int, StepNode, StepNode | EventLine]] = []
    for span in spans:
        node = nodes.get(span.get("span_id"))
        if node is not None and node is not root:
            start = _timestamp(span.get("start")) or 0.0
            placed.append((start, -1, enclosing(span.get("span_id")), node))
    known = [enclosing(e.get("span_id")) if e.get("span_id") in by_id else None for e in events]
    steps_by_name: dict[str, StepNode] = {}
    for node in nodes.values():
        if node is not root:
            steps_by_name.setdefault(node.name, node)
    for index, home in enumerate(_homes(events, known, steps_by_name, root)):
        if home is None:  # a step that left no span (it never ended): made up from its name
            name = str(events[index]["step"])
            home = steps_by_name.get(name)
            if home is None:
                home = steps_by_name[name] = StepNode(name=name, ended=False)
                placed.append((when[index], lines[index].seq - 0.5, root, home))
        placed.append((when[index], lines[index].seq, home, lines[index]))
    placed.sort(key=lambda item: (item[0], item[1]))
    for _, _, parent, child in placed:
        parent.children.append(child)
    return root


def _homes(
    events: list[Mapping[str, Any]],
    known: list[StepNode | None],
    steps_by_name: dict[str, StepNode],
    root: StepNode,
) -> list[StepNode | None]:
    """The step of each event: where its span says (``known``), else by its step name.

    Step names repeat (a loop), so an event without a span goes where the nearest event (by
    seq) with a span and the same step name went; failing that, to the first step of that
    name. ``None``: no step of that name has a span at all.
    """
    nearest: list[list[tuple[int, StepNode] | None]] = []
    for order in (range(len(events)), range(len(events) - 1, -1, -1)):
        found: list[tuple[int, StepNode] | None] = [None] * len(events)
        last: dict[Any, tuple[int, StepNode]] = {}
        for index in order:
            name = events[index].get("step")
            home = known[index]
            if home is not None and home.name == name:
                last[name] = (index, home)
            elif home is None:
                found[index] = last.get(name)
        nearest.append(found)
    homes: list[StepNode | None] = []
    for index, event in enumerate(events):
        name = event.get("step")
        if known[index] is not None:
            homes.append(known[index])
        elif not isinstance(name, str):
            homes.append(root)
        else:
            before, after = nearest[0][index], nearest[1][index]
            if before and after:
                pick = before if index - before[0] <= after[0] - index else after
            else:
                pick = before or after
            homes.append(pick[1] if pick else steps_by_name.get(name))
    return homes


# -- small readers --------------------------------------------------------------------------------


def _timestamp(value: Any) -> float | None:
    parsed = _trace.parse_time(value)
    return parsed.timestamp() if parsed else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
