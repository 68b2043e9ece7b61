"""What the backend tests send to `agenttrace serve` and how they read it back: real OTLP
payloads built with the OpenTelemetry SDK, shaped like a recorded agent run."""

from __future__ import annotations

import json

import requests
from conftest import ServeProcess as Server
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

KEY_A = "at_test_projectA_0123456789abcdefghijklmnop"
KEY_B = "at_live_projectB_0123456789abcdefghijklmnop"


def agent_spans(
    name: str = "checkout_agent", fail: bool = False, calls: int = 2
) -> list[ReadableSpan]:
    """Spans shaped like a recorded run: root, a step, CLIENT spans carrying events."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    run_facts = {"seed": 42, "hash_seed": "0", "sdk": "agenttrace test", "python": "3.11"}
    with tracer.start_as_current_span(
        name, attributes={"agenttrace.run.name": name, "agenttrace.run": json.dumps(run_facts)}
    ) as root:
        root.set_attribute(
            "agenttrace.events",
            json.dumps(
                [
                    {
                        "seq": 0,
                        "kind": "entropy",
                        "source": "os.urandom",
                        "data": "AAEC",
                        "step": None,
                    }
                ]
            ),
        )
        with tracer.start_as_current_span("Planning", attributes={"agenttrace.step.type": "llm"}):
            for seq in range(1, calls + 1):
                with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as span:
                    event = {
                        "seq": seq,
                        "kind": "http",
                        "step": "Planning",
                        "span_id": format(span.get_span_context().span_id, "016x"),
                        "request": {
                            "method": "POST",
                            "url": "https://api.openai.com/v1/chat/completions",
                            "headers": {"content-type": "application/json"},
                            "body": {
                                "json": {
                                    "model": "m",
                                    "messages": [{"role": "user", "content": f"q{seq}"}],
                                }
                            },
                        },
                        "response": {
                            "status": 200,
                            "headers": {},
                            "body": {"json": {"answer": seq}},
                        },
                        "duration_ms": 12.5,
                        "redacted": [],
                    }
                    span.set_attribute("agenttrace.seq", seq)
                    span.set_attribute("agenttrace.event", json.dumps(event))
        if fail:
            root.set_status(Status(StatusCode.ERROR, "ValueError: boom"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def trace_id_of(spans: list[ReadableSpan]) -> str:
    return format(spans[0].context.trace_id, "032x")


def protobuf(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def post(server: Server, body: bytes, key: str | None = KEY_A, **headers: str) -> requests.Response:
    all_headers = {"Content-Type": "application/x-protobuf", **headers}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    return requests.post(server.url + "/v1/traces", data=body, headers=all_headers, timeout=30)


def get(server: Server, path: str, key: str | None = KEY_A, **params: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(server.url + path, headers=headers, params=params, timeout=30)
