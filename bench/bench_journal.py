"""Run-journal cost per event: what keeping a killed process's calls adds to each one, in-process.

    .venv/bin/python bench/bench_journal.py          # prints the table
    bench_journal.run() -> {"case": µs per event, ...}   (used by ``make bench``)

Each case is the journal's whole share of the agent's time for one event: encoding the finished
span (its event spliced in as JSON) and the ``os.write`` of the line to the journal file, as the
span processor does it on the agent's thread. Events are shaped like the real thing (the scrub
benchmark's OpenAI-style chat call). Times are CPU time of the calling thread (the system call
included), best of several batches: on a shared machine, time spent waiting for a core is the
neighbours', not the journal's (``journal_fsync=always`` is wall time: its cost is the wait).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agenttrace.exporters.journal import Journal  # noqa: E402
from bench_scrub import event, json_response, request, stream_response  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from agenttrace import _config, _trace  # noqa: E402
from agenttrace._redaction import Redactor  # noqa: E402
from agenttrace._runs import Runs  # noqa: E402


def _journal(directory: str, fsync: bool) -> tuple[Journal, Runs, Any]:
    provider = TracerProvider()
    tracer = provider.get_tracer("agenttrace")
    runs = Runs(tracer, "bench", {"seed": 1}, str)
    journal = Journal(directory, Redactor.from_settings(_config.resolve({})), fsync=fsync)
    runs.watchers.append(journal.watch)
    runs.sinks.append(journal.event)
    run = runs.open("bench")
    return journal, runs, (tracer, run)


def _http_span(tracer: Any, run: Any, payload: dict[str, Any]) -> Any:
    span = tracer.start_span(
        "POST",
        trace.set_span_in_context(run.span),
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": "POST",
            "url.full": "https://api.openai.com/v1/chat/completions",
            "server.address": "api.openai.com",
            "server.port": 443,
            "agenttrace.seq": 1,
            "agenttrace.client": "httpx2",
            "http.response.status_code": 200,
            _trace.ATTR_EVENT: _trace.dumps_compact(payload),
        },
    )
    span.end()
    return span._readable_span()


def cases(directory: str) -> dict[str, Callable[[], Any]]:
    journal, runs, (tracer, run) = _journal(directory + "/plain", fsync=False)
    json_span = _http_span(tracer, run, event(request(), json_response()))
    stream_span = _http_span(tracer, run, event(request(), stream_response()))
    step = tracer.start_span(
        "Planning",
        trace.set_span_in_context(run.span),
        attributes={_trace.ATTR_STEP_TYPE: "thought", _trace.ATTR_STEP_INPUT: '{"city": "Paris"}'},
    )
    step.end()
    step_span = step._readable_span()
    draw = {
        "seq": 1,
        "kind": "entropy",
        "source": "os.urandom",
        "data": "AAECAwQFBgcICQoLDA0ODw==",
        "flow": "main",
    }
    synced, _, (synced_tracer, synced_run) = _journal(directory + "/synced", fsync=True)
    synced_span = _http_span(synced_tracer, synced_run, event(request(), json_response()))

    def step_both() -> None:
        journal.on_start(step_span)  # type: ignore[arg-type]
        journal.on_end(step_span)

    return {
        "LLM call, JSON answer (span + event)": lambda: journal.on_end(json_span),
        "LLM call, 100-chunk SSE stream": lambda: journal.on_end(stream_span),
        "entropy draw (uuid4)": lambda: journal.event(run, draw),
        "step start + end": step_both,
        "LLM call, journal_fsync=always": lambda: synced.on_end(synced_span),
    }


def per_call_us(
    fn: Callable[[], Any],
    number: int,
    batches: int = 7,
    clock: Callable[[], int] = time.thread_time_ns,
) -> float:
    fn()
    times = []
    for _ in range(batches):
        start = clock()
        for _ in range(number):
            fn()
        times.append((clock() - start) / number / 1000)
    return round(min(times), 1)


def run() -> dict[str, float]:
    """µs per event for each case (best of 7 batches)."""
    with tempfile.TemporaryDirectory(prefix="agenttrace-bench-journal-") as directory:
        results = {}
        for name, fn in cases(directory).items():
            if "fsync" in name:  # waiting for the disk is the cost here: wall time
                results[name] = per_call_us(fn, 50, clock=time.perf_counter_ns)
            else:
                results[name] = per_call_us(fn, 2000)
        return results


if __name__ == "__main__":
    for case, us in run().items():
        print(f"{us:10.1f} µs  {case}")
