"""Case 5 (export): spans through the backend exporter into a real ``agenttrace serve``.

Params: api_url, api_key (one per round: the server counts per project), spans, per_trace,
block, workdir.

Spans look like recorded HTTP calls (CLIENT spans carrying a full event, ~1 kB) grouped in
traces of ``per_trace`` under a run span. The agent thread produces them in blocks and waits
for a flush between blocks: that keeps the bounded queue from dropping (which would flatter the
throughput) and measures what the exporter sustains end to end, server included.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

from harness import current_rss_mb, emit, params, payload, peak_rss_mb

RESPONSE = {"ok": True, "answer": "the weather in Paris is sunny", "tokens": 12}


def event_json(i: int) -> str:
    """An HTTP event as the recorder stores it on its span."""
    headers = [["content-type", "application/json"], ["accept", "*/*"], ["user-agent", "bench"]]
    return json.dumps(
        {
            "seq": i,
            "kind": "http",
            "step": "llm",
            "span_id": f"{i:016x}",
            "client": "httpx",
            "request": {
                "method": "POST",
                "url": "http://127.0.0.1:8000/v1/chat/completions",
                "headers": headers,
                "body": {"json": payload(i)},
            },
            "response": {"status": 200, "headers": headers, "body": {"json": RESPONSE}},
            "duration_ms": 1.234,
            "redacted": [],
        },
        separators=(",", ":"),
    )


def produce(tracer: Any, start: int, count: int, per_trace: int, roots: dict[int, Any]) -> float:
    """Create and end ``count`` call spans; returns the agent-thread seconds it took."""
    from opentelemetry import trace

    begin = time.perf_counter()
    for i in range(start, start + count):
        group = i // per_trace
        root = roots.get(group)
        if root is None:
            root = roots[group] = tracer.start_span(
                "bench-run", attributes={"agenttrace.run.name": "bench"}
            )
        span = tracer.start_span(
            "POST",
            context=trace.set_span_in_context(root),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "url.full": "http://127.0.0.1:8000/v1/chat/completions",
                "agenttrace.seq": i,
                "http.response.status_code": 200,
                "agenttrace.event": event_json(i),
            },
        )
        span.end()
        if (i + 1) % per_trace == 0:
            roots.pop(group).end()
    return time.perf_counter() - begin


def bare_cost_us(count: int, per_trace: int) -> float:
    """The same spans with no processor at all: what any OpenTelemetry SDK user pays."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    produce(tracer, 0, count // 10, per_trace, {})  # warm-up
    return produce(tracer, 0, count, per_trace, {}) / count * 1e6


def server_span_count(api_url: str, api_key: str) -> int:
    request = urllib.request.Request(
        api_url + "/api/v1/traces?limit=1000", headers={"Authorization": f"Bearer {api_key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        traces = json.load(response)
    return sum(t["span_count"] for t in traces["traces"])


def main() -> None:
    p = params()
    os.environ["AGENTTRACE_SPOOL_DIR"] = os.path.join(p["workdir"], "spool")
    from agenttrace.exporters.backend import backend_processor
    from opentelemetry.sdk.trace import TracerProvider

    from agenttrace import _config

    n, per_trace, block = p["spans"], p["per_trace"], p["block"]
    bare = bare_cost_us(min(n, 20_000), per_trace)
    settings = _config.resolve({"api_key": p["api_key"], "api_url": p["api_url"]})
    processor = backend_processor(settings)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    roots: dict[int, Any] = {}
    agent_s = 0.0
    rss_early = None
    begin = time.perf_counter()
    for start in range(0, n, block):
        agent_s += produce(tracer, start, min(block, n - start), per_trace, roots)
        processor.force_flush()
        if rss_early is None and start + block >= n // 10:
            rss_early = current_rss_mb()
    elapsed = time.perf_counter() - begin
    rss_end = current_rss_mb()
    dropped = processor._dropped
    provider.shutdown()
    spooled = sum(len(files) for _, _, files in os.walk(os.path.join(p["workdir"], "spool")))
    emit(
        {
            "spans_per_s": n / elapsed,
            "agent_us_per_span": agent_s / n * 1e6 - bare,
            "bare_us_per_span": bare,
            "rss_growth_mb": rss_end - (rss_early or rss_end),
            "peak_rss_mb": peak_rss_mb(),
            "dropped": dropped,
            "spooled_files": spooled,
            "server_spans": server_span_count(p["api_url"], p["api_key"]),
            "made": n + n // per_trace,
        }
    )


if __name__ == "__main__":
    main()
