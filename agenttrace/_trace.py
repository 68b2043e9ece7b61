"""The trace document (format ``agenttrace.trace/1``): built from spans, loaded for replay.

The document is reconstructed from span attributes alone, so the local store and the backend
(which only ever sees OTLP spans) produce the same thing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from .errors import EventsFileError

FORMAT = "agenttrace.trace/1"

# Span attribute names: the contract between recorder, exporters and server.
ATTR_EVENT = "agenttrace.event"  # one I/O event (JSON) on its CLIENT span
ATTR_EVENTS = "agenttrace.events"  # a JSON list of non-HTTP events (entropy, dns, clock)
ATTR_SEQ = "agenttrace.seq"
ATTR_RUN_NAME = "agenttrace.run.name"
ATTR_RUN = (
    "agenttrace.run"  # JSON: run facts replay needs (seed, started_at, hash_seed, sdk, python)
)
ATTR_STEP_TYPE = "agenttrace.step.type"
ATTR_STEP_INPUT = "agenttrace.step.input"
ATTR_STEP_RESULT = "agenttrace.step.result"

EVENT_FIELDS = ("seq", "kind", "request")

# The local store (``local_dir``) keeps recordings in traces/ and replayed runs in replays/traces/,
# each with its last.json (recordings also last-failure.json).
REPLAYS_DIR = "replays"

# Calls go out and get an answer (each on its own span); facts are what the run read
# (entropy, DNS, the clock), replayed as recorded.
CALL_KINDS = frozenset({"http", "websocket", "mcp", "tool"})
FACT_KINDS = frozenset({"entropy", "dns", "clock"})


def is_call(event: Mapping[str, Any]) -> bool:
    """Whether an event is a call; a kind this version does not know is one if it has a span."""
    kind = event.get("kind")
    return kind in CALL_KINDS or (kind not in FACT_KINDS and bool(event.get("span_id")))


def span_record(
    *,
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int | None,
    status: str,
    status_message: str | None,
    attributes: Mapping[str, Any],
) -> dict[str, Any]:
    """The neutral span shape both the local store and the server build documents from."""
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "kind": kind,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "status": status,
        "status_message": status_message,
        "attributes": dict(attributes),
    }


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (
        _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    )


def parse_time(value: Any) -> _dt.datetime | None:
    """A document timestamp (as ``_iso`` writes them) as an aware datetime; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:  # 3.10's fromisoformat does not read a trailing Z
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def elapsed_ms(start: Any, end: Any) -> float | None:
    """Milliseconds between two document timestamps, or None if either is missing."""
    begun, ended = parse_time(start), parse_time(end)
    if begun is None or ended is None:
        return None
    return round((ended - begun).total_seconds() * 1000.0, 3)


def build_document(spans: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Assemble the trace document from the spans of one trace (any order, duplicates ignored)."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for span in spans:
        by_id[span["span_id"]] = span
    ordered = sorted(by_id.values(), key=lambda s: (s["start_ns"], s["span_id"]))
    events: dict[int, dict[str, Any]] = {}
    root = None
    for span in ordered:
        attrs = span["attributes"]
        if ATTR_RUN_NAME in attrs and (root is None or not span.get("parent_id")):
            root = span
        raw = attrs.get(ATTR_EVENT)
        if raw:
            event = json.loads(raw)
            events[event["seq"]] = event
        raw_list = attrs.get(ATTR_EVENTS)
        if raw_list:
            for event in json.loads(raw_list):
                events[event["seq"]] = event
    trace_id = (root or (ordered[0] if ordered else {})).get("trace_id", "")
    run: dict[str, Any] = {"name": None, "status": "unset", "started_at": None, "ended_at": None}
    if root is not None:
        facts = json.loads(root["attributes"].get(ATTR_RUN, "{}"))
        run.update(
            name=root["attributes"].get(ATTR_RUN_NAME),
            status="error"
            if root["status"] == "error"
            else ("ok" if root.get("end_ns") else "unset"),
            started_at=_iso(root["start_ns"]),
            ended_at=_iso(root.get("end_ns")),
        )
        if root.get("status_message"):
            run["error"] = root["status_message"]
        run.update(facts)
    return {
        "format": FORMAT,
        "trace_id": trace_id,
        "run": run,
        "spans": [_public_span(s) for s in ordered],
        "events": [events[k] for k in sorted(events)],
    }


def _public_span(span: Mapping[str, Any]) -> dict[str, Any]:
    attrs = {
        k: v for k, v in span["attributes"].items() if k not in (ATTR_EVENT, ATTR_EVENTS, ATTR_RUN)
    }
    out = {
        "span_id": span["span_id"],
        "parent_id": span.get("parent_id"),
        "name": span["name"],
        "kind": span["kind"],
        "start": _iso(span["start_ns"]),
        "end": _iso(span.get("end_ns")),
        "status": span["status"],
        "attributes": attrs,
    }
    if span.get("status_message"):
        out["status_message"] = span["status_message"]
    return out


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False, default=str)


def dump(document: Mapping[str, Any], fh: TextIO) -> None:
    """``dumps`` straight into a file: a pretty-printed document is built from millions of
    small strings, which ``dumps`` holds all at once (~6× the file's size in memory)."""
    json.dump(document, fh, indent=1, ensure_ascii=False, default=str)


# -- loading for replay -------------------------------------------------------------------------


def load_replay_source(source: Any) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Accept a path, a trace document or a bare list of events.

    Returns (run facts, events sorted by seq, a label naming the source for messages).
    """
    document, label = load_document(source, "replay_events")
    return document["run"], document["events"], label


def load_document(source: Any, label: str = "trace") -> tuple[dict[str, Any], str]:
    """A checked trace document from a path, a document or a bare list of events (which
    becomes a document with no spans); ``label`` names a source that is not a path.

    Returns (the document with its events sorted by seq, the label for messages).
    Raises EventsFileError naming the source and what is wrong with it.
    """
    if isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        document = _read_json_file(label)
    else:
        document = source
    if isinstance(document, list):
        run: dict[str, Any] = {}
        events = document
        document = {"format": FORMAT, "trace_id": "", "run": run, "spans": [], "events": events}
    elif isinstance(document, dict):
        fmt = document.get("format")
        if fmt != FORMAT:
            other_version = isinstance(fmt, str) and fmt.startswith(FORMAT.rsplit("/", 1)[0])
            hint = (
                "it was written by another agenttrace version; read it with that version"
                if other_version
                else "a trace written by agenttrace, or `agenttrace pull`"
            )
            raise EventsFileError(
                f"{label}: format {fmt!r} is not supported; expected {FORMAT!r} ({hint})"
            )
        events = document.get("events")
        if not isinstance(events, list):
            raise EventsFileError(f"{label}: the document has no 'events' list")
        run = document.get("run") or {}
        if not isinstance(run, dict):
            raise EventsFileError(f"{label}: 'run' is a {type(run).__name__}, not an object")
    else:
        raise EventsFileError(
            f"{label}: expected a trace document (JSON object) or a list of events, got {type(document).__name__}"
        )
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise EventsFileError(
                f"{label}: events[{index}] is a {type(event).__name__}, not an object"
            )
        missing = [
            f
            for f in EVENT_FIELDS
            if f not in event and not (f == "request" and event.get("kind") != "http")
        ]
        if missing:
            raise EventsFileError(
                f"{label}: events[{index}] (seq {event.get('seq', '?')}) is missing {', '.join(missing)}; "
                "the file was not written by agenttrace or was edited by hand"
            )
        if event.get("kind") == "http":
            if "response" not in event and "error" not in event:
                raise EventsFileError(
                    f"{label}: events[{index}] (seq {event['seq']}) has neither 'response' nor 'error'"
                )
            req = event["request"]
            if not isinstance(req, dict) or "method" not in req or "url" not in req:
                raise EventsFileError(
                    f"{label}: events[{index}] (seq {event['seq']}) request lacks method/url"
                )
    spans = document.get("spans", [])
    if not isinstance(spans, list) or not all(isinstance(s, dict) for s in spans):
        raise EventsFileError(f"{label}: 'spans' is not a list of objects")
    events = sorted(events, key=lambda e: e["seq"])
    return {**document, "run": run, "spans": spans, "events": events}, label


def _read_json_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise EventsFileError(
            f"{path}: no such events file; record a run first (it lands in .agenttrace/last.json) "
            "or fetch one with `agenttrace pull --last`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EventsFileError(f"{path}: cannot be read: {exc}") from None
    if not text.strip():
        raise EventsFileError(f"{path}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        stripped = text.rstrip()
        truncated = stripped[:1] in "{[" and stripped[-1:] not in "}]"
        hint = (
            "the file looks truncated (was it copied while being written?)"
            if truncated
            else "it is not valid JSON"
        )
        raise EventsFileError(
            f"{path}: line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}; {hint}"
        ) from None


def dumps_compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
