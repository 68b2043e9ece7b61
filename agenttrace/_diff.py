"""Two runs side by side: their calls aligned one to one, and where they part.

Used by ``agenttrace diff`` (and ``replay``, to report how a replay went) and by the web
viewer's side-by-side view: ``align`` pairs the calls of two event lists, ``compare`` adds the
run-level verdict and deltas.

Equivalence — what "the same run" means here:

- Only **calls** (http, websocket, mcp, tool, and unknown kinds that have a span) are aligned
  and compared. Facts (entropy, DNS, clock) are counted, not compared: a faithful replay serves
  them as recorded, and two recordings always draw different entropy.
- Calls pair up in order on the matching key replay uses (kind, method, canonical URL and
  canonical body); an inserted or removed call leaves the others paired. Calls in the same place
  with the same endpoint but another request are one *changed* call, not a removal plus an addition.
- A request is equal when method, canonical URL (sorted query, default ports), canonical body
  (JSON by value, not layout) and headers are, **except volatile headers**: tracing
  (traceparent, tracestate, baggage), user-agent, date, framing (content-length, host,
  connection, transfer-encoding), SDK telemetry (x-stainless-*), per-attempt ids
  (idempotency-key, x-request-id).
- An answer is equal when status, headers (again less the volatile ones, and per-response ids,
  rate-limit counters, server timings, cookies), and body are; a streamed body is compared as its
  SSE events (or text), never by chunk boundaries or timing. A tool's result or error, a
  websocket's received frames, an MCP session's received messages likewise.
- Never compared: trace, span and step ids, timestamps and durations, seq numbers (a replay may
  renumber), step names, the client library that carried a call, redaction lists.
- The runs must also end with the same status (ok, error, killed...).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import _sse, _trace
from ._body import json_value
from ._cost import run_totals
from ._genai import Usage
from ._jsondiff import MISSING, Difference, differences, short
from ._outline import summarize
from .replay.matching import canonical_url

_VOLATILE_REQUEST_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "baggage",
        "user-agent",
        "date",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        "idempotency-key",
        "x-request-id",
    }
)
_VOLATILE_RESPONSE_HEADERS = frozenset(
    {
        "date",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "x-request-id",
        "request-id",
        "cf-ray",
        "set-cookie",
        "server-timing",
        "age",
        "openai-processing-ms",
        "x-envoy-upstream-service-time",
    }
)
_VOLATILE_HEADER_PREFIXES = ("x-stainless-", "x-ratelimit-", "anthropic-ratelimit-")

# Keys of an event of an unknown kind that are bookkeeping, not behaviour.
_BOOKKEEPING = frozenset({"seq", "span_id", "step", "duration_ms", "redacted", "client", "at_ms"})
_ANSWER_KEYS = ("response", "result", "error", "frames", "messages", "close")

MAX_DIFFERENCES = 20  # per side of a pair; the count of the rest is kept


@dataclass
class Pair:
    """Two aligned calls (or one, when the other run has no counterpart)."""

    op: str  # "equal", "changed", "added" (only in B), "removed" (only in A)
    a: Mapping[str, Any] | None
    b: Mapping[str, Any] | None
    request: list[str] = field(default_factory=list)  # differences, "path: x → y"
    answer: list[str] = field(default_factory=list)
    more: int = 0  # differences left out of the lists

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for side, event in (("a", self.a), ("b", self.b)):
            if event is not None:
                line = summarize(event)
                out[side] = {"seq": line.seq, "step": line.step, "kind": line.kind}
                out[side]["label"] = line.label
        if self.request:
            out["request"] = self.request
        if self.answer:
            out["answer"] = self.answer
        if self.more:
            out["more_differences"] = self.more
        return out


def align(
    events_a: Sequence[Mapping[str, Any]], events_b: Sequence[Mapping[str, Any]]
) -> list[Pair]:
    """The calls of two runs paired in order (see the module doc for what counts as equal)."""
    calls_a = [_Call(e) for e in events_a if _trace.is_call(e)]
    calls_b = [_Call(e) for e in events_b if _trace.is_call(e)]
    # Runs compared are mostly alike: trim the common ends before the quadratic part.
    head = 0
    while head < min(len(calls_a), len(calls_b)) and calls_a[head].key == calls_b[head].key:
        head += 1
    tail = 0
    while (
        tail < min(len(calls_a), len(calls_b)) - head
        and calls_a[-1 - tail].key == calls_b[-1 - tail].key
    ):
        tail += 1
    pairs = [_paired(a, b) for a, b in zip(calls_a[:head], calls_b[:head], strict=True)]
    pairs += _align_middle(calls_a[head : len(calls_a) - tail], calls_b[head : len(calls_b) - tail])
    tail_a, tail_b = calls_a[len(calls_a) - tail :], calls_b[len(calls_b) - tail :]
    pairs += [_paired(a, b) for a, b in zip(tail_a, tail_b, strict=True)]
    return pairs


def _align_middle(calls_a: list[_Call], calls_b: list[_Call]) -> list[Pair]:
    pairs: list[Pair] = []
    matcher = difflib.SequenceMatcher(
        None, [c.key for c in calls_a], [c.key for c in calls_b], autojunk=False
    )
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            pairs += [_paired(a, b) for a, b in zip(calls_a[a0:a1], calls_b[b0:b1], strict=True)]
            continue
        # Unequal requests: the same endpoint in the same place is one changed call.
        block_a, block_b = calls_a[a0:a1], calls_b[b0:b1]
        inner = difflib.SequenceMatcher(
            None, [c.endpoint for c in block_a], [c.endpoint for c in block_b], autojunk=False
        )
        for inner_op, i0, i1, j0, j1 in inner.get_opcodes():
            if inner_op == "equal":
                pairs += [
                    _paired(a, b) for a, b in zip(block_a[i0:i1], block_b[j0:j1], strict=True)
                ]
            else:
                pairs += [Pair("removed", c.event, None) for c in block_a[i0:i1]]
                pairs += [Pair("added", None, c.event) for c in block_b[j0:j1]]
    return pairs


def _paired(a: _Call, b: _Call) -> Pair:
    pair = Pair("equal", a.event, b.event)
    if a.key != b.key:
        pair.request, more = _described(differences(a.request, b.request, "request"))
        pair.more += more
    if a.answer_key != b.answer_key:
        found = differences(a.detailed_answer(), b.detailed_answer(), "response")
        pair.answer, more = _described(found)
        pair.more += more
    if pair.request or pair.answer or pair.more:
        pair.op = "changed"
    return pair


def _described(found: Any) -> tuple[list[str], int]:
    out, more = [], 0
    for difference in found:
        if len(out) < MAX_DIFFERENCES:
            out.append(describe(difference))
        else:
            more += 1
    return out, more


def describe(d: Difference) -> str:
    """One difference as ``path: A's value → B's value``."""
    if d.lengths:
        return f"{d.path}: {d.a} items → {d.b} items"
    a = "(absent)" if d.a is MISSING else short(d.a)
    b = "(absent)" if d.b is MISSING else short(d.b)
    return f"{d.path}: {a} → {b}"


class _Call:
    """A call as compared: what it asked, what it got, and the keys to align on."""

    __slots__ = ("event", "request", "key", "answer_key", "endpoint", "_view")

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        kind = str(event.get("kind"))
        self._view = _VIEWS.get(kind, _other_view)
        self.request, answer, endpoint = self._view(event, False)
        self.key = kind + "\0" + _canonical(self.request)
        self.answer_key = _canonical(answer)
        self.endpoint = kind + "\0" + endpoint

    def detailed_answer(self) -> Any:
        """The answer with streams split into events: paths into them are what a person needs,
        but parsing every stream of a big run only to find them equal is not."""
        return self._view(self.event, True)[1]


_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode


def _http_view(event: Mapping[str, Any], detailed: bool) -> tuple[Any, Any, str]:
    request = event.get("request") or {}
    url = canonical_url(str(request.get("url", "")))
    method = str(request.get("method", "")).upper()
    asked = {
        "method": method,
        "url": url,
        "headers": _headers(request.get("headers"), _VOLATILE_REQUEST_HEADERS),
        "body": _body_value(request.get("body")),
    }
    got: dict[str, Any] = {}
    response = event.get("response")
    if isinstance(response, Mapping):
        got["status"] = response.get("status")
        got["headers"] = _headers(response.get("headers"), _VOLATILE_RESPONSE_HEADERS)
        if "chunks" in response:
            text = _sse.stream_text(response)
            got["stream"] = _stream_value(text) if detailed else text
        else:
            got["body"] = _body_value(response.get("body"))
    if event.get("error") is not None:
        got["error"] = _error_value(event["error"])
    # Same path on another host (a test server's port, a staging URL) is the same endpoint.
    return asked, got, f"{method} {urlsplit(url).path}"


def _tool_view(event: Mapping[str, Any], detailed: bool) -> tuple[Any, Any, str]:
    got = {"error": _error_value(event["error"])} if "error" in event else {}
    if "result" in event:
        got["result"] = event["result"]
    return {"name": event.get("name"), "args": event.get("args")}, got, str(event.get("name"))


def _websocket_view(event: Mapping[str, Any], detailed: bool) -> tuple[Any, Any, str]:
    request = event.get("request") or {}
    frames = [f for f in event.get("frames") or () if isinstance(f, Mapping)]
    url = str(request.get("url", ""))
    asked = {
        "url": url,
        "headers": _headers(request.get("headers"), _VOLATILE_REQUEST_HEADERS),
        "sent": [_frame_value(f) for f in frames if f.get("dir") == "send"],
    }
    got: dict[str, Any] = {"received": [_frame_value(f) for f in frames if f.get("dir") != "send"]}
    for key in ("close", "error"):
        if event.get(key) is not None:
            got[key] = event[key] if key == "close" else _error_value(event[key])
    return asked, got, url


def _mcp_view(event: Mapping[str, Any], detailed: bool) -> tuple[Any, Any, str]:
    messages = [m for m in event.get("messages") or () if isinstance(m, Mapping)]
    server = str(event.get("server") or "")
    asked = {
        "transport": event.get("transport"),
        "server": server,
        "sent": [m.get("json") for m in messages if m.get("dir") == "send"],
    }
    got: dict[str, Any] = {"received": [m.get("json") for m in messages if m.get("dir") != "send"]}
    if event.get("error") is not None:
        got["error"] = _error_value(event["error"])
    return asked, got, server


def _other_view(event: Mapping[str, Any], detailed: bool) -> tuple[Any, Any, str]:
    plain = _without_bookkeeping(event)
    asked = {k: v for k, v in plain.items() if k not in _ANSWER_KEYS}
    got = {k: v for k, v in plain.items() if k in _ANSWER_KEYS}
    return asked, got, str(event.get("name") or event.get("url") or "")


_VIEWS = {"http": _http_view, "tool": _tool_view, "websocket": _websocket_view, "mcp": _mcp_view}


def _without_bookkeeping(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_bookkeeping(v) for k, v in value.items() if k not in _BOOKKEEPING}
    if isinstance(value, list):
        return [_without_bookkeeping(v) for v in value]
    return value


def _headers(headers: Any, volatile: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in headers or ():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            continue
        name = str(pair[0]).lower()
        if name in volatile or name.startswith(_VOLATILE_HEADER_PREFIXES):
            continue
        out[name] = pair[1] if name not in out else f"{out[name]}, {pair[1]}"
    return out


_NOT_JSON = object()


def _body_value(body: Any) -> Any:
    """A stored body as a comparable value: JSON by value (whatever its layout), else text."""
    value = json_value(body, _NOT_JSON)
    if value is not _NOT_JSON:
        return value
    if not isinstance(body, Mapping):
        return None
    return body["text"] if "text" in body else {"base64": body.get("base64")}


def _stream_value(text: str) -> Any:
    """A streamed body as its SSE events (data parsed where it is JSON), else as text."""
    events = list(_sse.events(text))
    if not events:
        return text
    values = []
    for event in events:
        try:
            data: Any = json.loads(event.data)
        except ValueError:
            data = event.data
        values.append(data if event.event == "message" else {"event": event.event, "data": data})
    return values


def _frame_value(frame: Mapping[str, Any]) -> Any:
    return frame.get("text") if "text" in frame else {"base64": frame.get("base64")}


def _error_value(error: Any) -> Any:
    if isinstance(error, Mapping):
        return {"type": error.get("type"), "message": error.get("message")}
    return error


# -- two runs -------------------------------------------------------------------------------------


@dataclass
class RunFacts:
    label: str  # where the run came from (a path, a trace id)
    trace_id: str
    name: str | None
    status: str
    error: str | None
    calls: int
    usage: Usage
    cost_usd: float | None
    call_ms: float  # time spent in calls (durations summed)
    wall_ms: float | None
    facts: dict[str, int]  # entropy/dns/clock event counts

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "usage"}
        out["usage"] = self.usage.as_dict()
        return out


@dataclass
class Comparison:
    a: RunFacts
    b: RunFacts
    pairs: list[Pair]

    @property
    def status_differs(self) -> bool:
        return self.a.status != self.b.status

    @property
    def first_divergence(self) -> Pair | None:
        return next((p for p in self.pairs if p.op != "equal"), None)

    @property
    def equivalent(self) -> bool:
        return self.first_divergence is None and not self.status_differs

    def counts(self) -> dict[str, int]:
        counted = Counter(p.op for p in self.pairs)
        return {op: counted.get(op, 0) for op in ("equal", "changed", "added", "removed")}

    def to_json(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "format": "agenttrace.diff/1",
            "equivalent": self.equivalent,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "status_differs": self.status_differs,
            "first_divergence": first.to_json() if first else None,
            "counts": self.counts(),
            "pairs": [p.to_json() for p in self.pairs if p.op != "equal"],
        }


def compare(
    document_a: Mapping[str, Any],
    document_b: Mapping[str, Any],
    label_a: str = "A",
    label_b: str = "B",
) -> Comparison:
    """Compare two checked trace documents (see ``_trace.load_document``)."""
    events_a = list(document_a.get("events") or ())
    events_b = list(document_b.get("events") or ())
    return Comparison(
        _run_facts(document_a, label_a), _run_facts(document_b, label_b), align(events_a, events_b)
    )


def _run_facts(document: Mapping[str, Any], label: str) -> RunFacts:
    run = document.get("run") or {}
    events = list(document.get("events") or ())
    totals = run_totals(events, _trace.parse_time(run.get("started_at")))
    return RunFacts(
        label=label,
        trace_id=str(document.get("trace_id") or ""),
        name=run.get("name"),
        status=str(run.get("status", "unset")),
        error=run.get("error"),
        calls=totals.calls,
        usage=totals.usage,
        cost_usd=totals.cost_usd,
        call_ms=round(sum(_duration(e) for e in events if _trace.is_call(e)), 3),
        wall_ms=_trace.elapsed_ms(run.get("started_at"), run.get("ended_at")),
        facts=dict(Counter(str(e.get("kind")) for e in events if not _trace.is_call(e))),
    )


def _duration(event: Mapping[str, Any]) -> float:
    value = event.get("duration_ms")
    return float(value) if isinstance(value, (int, float)) else 0.0
