"""Scrubbing overhead per event: what redaction adds to each recorded call, in-process.

    .venv/bin/python bench/bench_scrub.py          # prints the table
    bench_scrub.run() -> {"case": µs per event, ...}   (used by ``make bench``)

Events are shaped like the real thing: an OpenAI-style chat call (system and user messages, two
tool schemas, the SDK's ~14 request headers and a provider's ~15 response headers), answered
with JSON or streamed as 100 SSE chunks. Times are the best of several batches (as timeit
advises: on a shared machine the slower batches measure the neighbours, not the code).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agenttrace._redaction import EMPTY, Redactor, Rules  # noqa: E402

SYSTEM = "You are a helpful travel assistant. Answer briefly and cite the tool results. " * 6
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Look up the {name.split('_')[1]} for a city, in metric units.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Paris"},
                    "days": {"type": "integer", "description": "Days ahead (0 = today)"},
                },
                "required": ["city"],
            },
        },
    }
    for name in ("get_weather", "get_hotels")
]
REQUEST_HEADERS = [
    ["host", "api.openai.com"],
    ["accept-encoding", "gzip, deflate"],
    ["connection", "keep-alive"],
    ["accept", "application/json"],
    ["content-type", "application/json"],
    ["user-agent", "OpenAI/Python 3.57.0"],
    ["x-stainless-lang", "python"],
    ["x-stainless-package-version", "3.57.0"],
    ["x-stainless-os", "Linux"],
    ["x-stainless-arch", "x64"],
    ["x-stainless-runtime", "CPython"],
    ["x-stainless-runtime-version", "3.11.7"],
    ["authorization", "Bearer sk-proj-" + "a1B2c3D4e5" * 5],
    ["x-stainless-retry-count", "0"],
]
RESPONSE_HEADERS = [
    ["date", "Tue, 25 Nov 2026 15:00:00 GMT"],
    ["content-type", "application/json"],
    ["transfer-encoding", "chunked"],
    ["connection", "keep-alive"],
    ["openai-organization", "org-abc"],
    ["openai-processing-ms", "412"],
    ["openai-version", "2020-10-01"],
    ["x-ratelimit-limit-requests", "10000"],
    ["x-ratelimit-limit-tokens", "2000000"],
    ["x-ratelimit-remaining-requests", "9999"],
    ["x-ratelimit-remaining-tokens", "1999500"],
    ["x-request-id", "req_0123456789abcdef0123456789abcdef"],
    ["strict-transport-security", "max-age=31536000; includeSubDomains; preload"],
    ["set-cookie", "__cf_bm=abcdef0123456789; path=/; HttpOnly; Secure; SameSite=None"],
    ["server", "cloudflare"],
]


def request(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the weather in Paris, and is my password safe?"},
        ],
        "tools": TOOLS,
        "max_tokens": 300,
        "temperature": 0.2,
        **(extra or {}),
    }
    return {
        "method": "POST",
        "url": "https://api.openai.com/v1/chat/completions",
        "headers": REQUEST_HEADERS,
        "body": {"json": body},
    }


def json_response() -> dict[str, Any]:
    answer = "The weather in Paris is partly cloudy, 14 °C, light wind from the west. " * 4
    body = {
        "id": "chatcmpl-0123456789",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 212, "completion_tokens": 64, "total_tokens": 276},
    }
    return {"status": 200, "headers": RESPONSE_HEADERS, "body": {"json": body}}


def stream_response(n: int = 100) -> dict[str, Any]:
    chunks = []
    for i in range(n):
        data = {
            "id": "chatcmpl-0123456789",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": f" word{i}"}, "finish_reason": None}],
        }
        chunks.append({"at_ms": 10.0 + i, "text": f"data: {json.dumps(data)}\n\n"})
    chunks.append({"at_ms": 200.0, "text": "data: [DONE]\n\n"})
    headers = [[k, "text/event-stream" if k == "content-type" else v] for k, v in RESPONSE_HEADERS]
    return {"status": 200, "headers": headers, "chunks": chunks}


def event(req: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": 1,
        "kind": "http",
        "step": "Answer",
        "span_id": "0123456789abcdef",
        "client": "httpx2",
        "request": req,
        "response": resp,
        "duration_ms": 412.0,
        "redacted": [],
    }


def per_call_us(fn: Callable[[], Any], number: int, batches: int = 7) -> float:
    fn()  # warm caches (compiled regexes, key verdicts)
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number * 1e6)
    return round(min(times), 1)


def cases() -> dict[str, Callable[[], Any]]:
    plain = Redactor()
    masked = Redactor([r"ACME-\d{6}", r"\b\d{3}-\d{2}-\d{4}\b"])
    rules = Rules.parse(["user_id", r"order-\d+"])
    json_event = event(request(), json_response())
    stream_event = event(request(), stream_response())
    secret_event = event(
        request({"api_key": "k-123", "metadata": {"session_id": "s-1", "jwt": "eyJabc"}}),
        json_response(),
    )
    payload = {"city": "Paris", "days": 3, "user": {"name": "Ada", "password": "hunter2"}}
    small = event(
        {
            "method": "GET",
            "url": "http://127.0.0.1:8000/weather?city=Paris",
            "headers": [
                ["host", "127.0.0.1:8000"],
                ["accept", "*/*"],
                ["user-agent", "python-httpx/0.28.1"],
            ],
            "body": None,
        },
        {
            "status": 200,
            "headers": [["content-type", "application/json"], ["content-length", "52"]],
            "body": {"json": {"city": "Paris", "temp_c": 14, "conditions": "partly cloudy"}},
        },
    )
    return {
        "small tool call, nothing to scrub": lambda: plain.event(small, EMPTY),
        "LLM call, JSON answer": lambda: plain.event(json_event, EMPTY),
        "LLM call, 100-chunk SSE stream": lambda: plain.event(stream_event, EMPTY),
        "LLM call with secrets in the body": lambda: plain.event(secret_event, EMPTY),
        "LLM call, 2 global masks + step filter": lambda: masked.event(json_event, rules),
        "replay matching key (request only)": lambda: plain.request(json_event["request"], EMPTY),
        "step input payload": lambda: plain.payload(payload, EMPTY),
    }


def span_case() -> tuple[str, Callable[[], Any]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agenttrace._scrub_spans import scrub_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("bench").start_span(
        "POST",
        attributes={
            "http.request.method": "POST",
            "url.full": "https://api.example.com/v1/search?q=paris&api_key=k-123",
            "server.address": "api.example.com",
            "server.port": 443,
            "http.response.status_code": 200,
            "agenttrace.seq": 1,
        },
    )
    span.end()
    redactor = Redactor()
    finished = exporter.get_finished_spans()
    return "span with a secret in url.full", lambda: scrub_span(finished[0], redactor)


def run() -> dict[str, float]:
    """µs per event for each case (best of 7 batches)."""
    results = {name: per_call_us(fn, 200) for name, fn in cases().items()}
    name, fn = span_case()
    results[name] = per_call_us(fn, 2000)
    return results


if __name__ == "__main__":
    for case, us in run().items():
        print(f"{us:10.1f} µs  {case}")
