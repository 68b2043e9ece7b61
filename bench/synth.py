"""Synthetic recordings for the scaling case: N HTTP events in the trace format.

The template is a real event recorded by AgentTrace (the first HTTP event of the reference
run), so the synthetic file has the exact shape, size and redaction state of a real one; only
``seq``, ``span_id`` and the request body change, the body being ``payload(i)`` as the replay
worker will send it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from harness import emit, params, payload

from agenttrace import _trace


def template(trace_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run facts, first HTTP event) of a recorded trace."""
    with open(trace_path, encoding="utf-8") as fh:
        document = json.load(fh)
    event = next(e for e in document["events"] if e["kind"] == "http")
    return document["run"], event


def events_file(trace_path: str, count: int, out: Path) -> Path:
    """Write a trace document with ``count`` HTTP events answering payload(0..count-1)."""
    run, event = template(trace_path)
    events = []
    for i in range(count):
        clone = copy.copy(event)
        clone["seq"] = i + 1
        clone["span_id"] = f"{i + 1:016x}"
        clone["request"] = {**event["request"], "body": {"json": payload(i)}}
        events.append(clone)
    document = {
        "format": _trace.FORMAT,
        "trace_id": f"{count:032x}",
        "run": run,
        "spans": [],
        "events": events,
    }
    out.write_text(_trace.dumps(document), encoding="utf-8")
    return out


def main() -> None:
    """Worker entry: write every size, in a process of its own (100,000 events take ~1 GB
    to build, which the orchestrator would otherwise hold, and pass on, for the whole run)."""
    p = params()
    paths = {
        str(n): str(events_file(p["trace"], n, Path(p["dir"]) / f"events-{n}.json"))
        for n in p["sizes"]
    }
    emit({"paths": paths})


if __name__ == "__main__":
    main()
