"""What a divergence message says: the call, its step, and the closest recorded candidates.

Good messages name the step, the expected and the actual (Temporal, DBOS). Only built on a miss
(an error path), so scanning the recording is fine here.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from typing import Any

from .._jsondiff import MISSING, Difference, differences, short
from ..capture.messages import comparable, session_key
from .engine import ReplayEngine
from .matching import request_key


def unrecorded_call(engine: ReplayEngine, request: dict[str, Any], step: str | None) -> str:
    where = f" in step {step!r}" if step else " outside any step"
    lines = [f"unrecorded call {request['method']} {request['url']}{where}."]
    found = candidates(engine, request)
    if found:
        lines.append("Closest recorded calls not yet replayed:")
        for event, diff in found:
            lines.append(
                f"  #{event['seq']} {event['request']['method']} {event['request']['url']}"
                + (f" (step {event['step']!r})" if event.get("step") else "")
                + f": {diff}"
            )
    else:
        lines.append("Every recorded call has already been replayed.")
    lines.append(f"Recording: {engine.source}")
    return "\n".join(lines)


def dropped_answer(recorded: dict[str, Any]) -> str:
    """A step filter dropped this call's payloads when recording: only its status is left, so
    the agent would silently get an empty answer."""
    where = f" in step {recorded['step']!r}" if recorded.get("step") else ""
    return (
        f"cannot replay {recorded['request']['method']} {recorded['request']['url']}{where}: "
        "its payloads were dropped by a step filter when it was recorded, so only an empty "
        "answer is left. Have the filter redact fields instead of returning None."
    )


def describe(event: dict[str, Any]) -> str:
    """One recorded event in a line: ``#7 POST https://...``, ``#9 tool db.query``..."""
    kind = event.get("kind")
    if kind == "tool":
        what = f"tool {event.get('name')}"
    elif kind in ("websocket", "mcp"):
        what = f"{kind} session {session_key(kind, event)}"
    else:
        what = f"{event['request']['method']} {event['request']['url']}"
    return f"#{event['seq']} {what}" + (f" (step {event['step']!r})" if event.get("step") else "")


def _where(step: str | None) -> str:
    return f" in step {step!r}" if step else " outside any step"


def unrecorded_tool(engine: ReplayEngine, name: str, args: Any, step: str | None) -> str:
    lines = [f"unrecorded call of tool {name!r}{_where(step)}."]
    recorded = [e for e in engine.not_yet_served("tool") if e.get("name") == name]
    if recorded:
        lines.append("Recorded calls of it not yet replayed:")
        for event in recorded[:3]:
            diffs = list(json_diff(event.get("args"), args, "args"))
            lines.append(f"  {describe(event)}: " + ("; ".join(diffs[:3]) or "identical arguments"))
    else:
        lines.append(f"No call of {name!r} is left in the recording.")
    lines.append(f"Recording: {engine.source}")
    return "\n".join(lines)


def unrecorded_session(engine: ReplayEngine, kind: str, key: str, step: str | None) -> str:
    lines = [f"unrecorded {kind} session {key}{_where(step)}."]
    recorded = engine.not_yet_served(kind)
    if recorded:
        lines.append(f"Recorded {kind} sessions not yet replayed:")
        lines += [f"  {describe(e)}" for e in recorded[:3]]
    else:
        lines.append(f"Every recorded {kind} session has already been replayed.")
    lines.append(f"Recording: {engine.source}")
    return "\n".join(lines)


def unreplayable_tool(recorded: dict[str, Any]) -> str:
    reason = recorded.get("unrecordable") or "its payloads were dropped by a step filter"
    return (
        f"cannot replay {describe(recorded)}: when it was recorded, {reason}. Record it again "
        "with encode=/decode= (or a filter that redacts fields instead of returning None)."
    )


def message_differs(
    label: str, index: int, expected: dict[str, Any], actual: dict[str, Any]
) -> str:
    diffs = list(json_diff(comparable(expected), comparable(actual), f"[{index}]"))
    return (
        f"{label}: message #{index} sent by the client differs from the recording: "
        + "; ".join(diffs[:3])
        + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")
    )


def message_unrecorded(label: str, index: int, actual: dict[str, Any]) -> str:
    return (
        f"{label}: the client sent message #{index} ({short(comparable(actual))}), which the "
        "recording does not have: the recorded session sent fewer messages."
    )


def session_ended(label: str, what: str) -> str:
    return f"{label}: the recording ends here, but the client {what}."


def never_made(unplayed: list[dict[str, Any]]) -> str:
    names = ", ".join(describe(e) for e in unplayed[:5])
    more = f" and {len(unplayed) - 5} more" if len(unplayed) > 5 else ""
    return f"{len(unplayed)} recorded call(s) were never made: {names}{more}"


def candidates(
    engine: ReplayEngine, request: dict[str, Any], limit: int = 3
) -> list[tuple[dict[str, Any], str]]:
    """The recorded calls closest to a request that matched none, with what differs."""
    method, url, body = request_key(request)
    scored = []
    for event in engine.not_yet_served():
        rmethod, rurl, rbody = request_key(event["request"])
        score = 0.0
        score += 2.0 if rmethod == method else 0.0
        score += 3.0 * difflib.SequenceMatcher(None, rurl, url).ratio()
        score += 2.0 * _similarity(rbody, body)
        scored.append(
            (score, event["seq"], event, _difference(method, url, body, rmethod, rurl, rbody))
        )
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [(event, diff) for _, _, event, diff in scored[:limit]]


def _similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if len(a) + len(b) > 20000:  # keep the error path fast for huge bodies
        a, b = a[:10000], b[:10000]
    return difflib.SequenceMatcher(None, a, b, autojunk=False).quick_ratio()


def _difference(method: str, url: str, body: str, rmethod: str, rurl: str, rbody: str) -> str:
    parts = []
    if method != rmethod:
        parts.append(f"method {rmethod} recorded, {method} now")
    if url != rurl:
        parts.append(f"URL recorded {rurl}")
    if body != rbody:
        parts.append("body differs: " + body_diff(rbody, body))
    return "; ".join(parts) or "identical key (already consumed by an earlier call)"


def body_diff(recorded: str, actual: str) -> str:
    """A short description of where two canonical bodies differ."""
    try:
        a, b = json.loads(recorded or "null"), json.loads(actual or "null")
    except ValueError:
        a = b = None
    else:
        diffs = list(differences(a, b, "body"))
        if diffs:
            text = "; ".join(_describe(d) for d in diffs[:3])
            text += f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
            if all(_timestamps(d) for d in diffs):
                text += CLOCK_HINT
            return text
    for i, (x, y) in enumerate(zip(recorded, actual, strict=False)):
        if x != y:
            return f"at char {i}: recorded …{recorded[max(0, i - 20) : i + 30]!r}…, now …{actual[max(0, i - 20) : i + 30]!r}…"
    return f"recorded {len(recorded)} chars, now {len(actual)} chars"


CLOCK_HINT = (
    "; only timestamps differ, and the clock was replayed from the recording: these values "
    "were not read from time.time/datetime (e.g. a native clock, or a value computed from "
    "time.monotonic)"
)


def json_diff(a: Any, b: Any, path: str) -> Iterator[str]:
    """Each difference between two JSON values, as ``path: recorded X, now Y``."""
    for difference in differences(a, b, path):
        yield _describe(difference)


def _describe(d: Difference) -> str:
    if d.lengths:
        return f"{d.path}: recorded {d.a} items, now {d.b}"
    if d.a is MISSING:
        return f"{d.path}: not recorded, now {short(d.b)}"
    if d.b is MISSING:
        return f"{d.path}: recorded {short(d.a)}, now missing"
    return f"{d.path}: recorded {short(d.a)}, now {short(d.b)}"


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH_RANGES = ((1e9, 4e9), (1e12, 4e12), (1e15, 4e15), (1e18, 4e18))  # s, ms, µs, ns


def _timestamps(d: Difference) -> bool:
    """Both sides look like a point in time (ISO 8601 text, or epoch s/ms/µs/ns)."""
    return not d.lengths and _timestamp(d.a) and _timestamp(d.b)


def _timestamp(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_ISO.match(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return any(low <= value < high for low, high in _EPOCH_RANGES)
    return False
