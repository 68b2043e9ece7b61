"""The instrumentation set-ups the cases compare, one function each, plus the HTTP clients.

Each set-up returns a ``finish()`` callable: it stops the instrumentation (writing what it
recorded) and returns facts to verify that it really saw the calls. A variant that silently
instrumented nothing would look free; the orchestrator refuses such results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from harness import payload

Finish = Callable[[], dict[str, Any]]

# vcrpy's body matching needs every part of the request; its default ignores the body.
VCR_MATCH_ON = ["method", "scheme", "host", "port", "path", "query", "body"]


def no_instrumentation(client: str, workdir: str) -> Finish:
    return lambda: {}


def plain_otel(client: str, workdir: str) -> Finish:
    """What an OpenTelemetry user runs: SDK provider, BatchSpanProcessor, stock instrumentation."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    exported = [0]

    class NoOpExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            exported[0] += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    trace.set_tracer_provider(provider)
    if client == "requests":
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().instrument()
        used = "opentelemetry-instrumentation-requests"
    else:
        used = instrument_httpx_otel(provider)

    def finish() -> dict[str, Any]:
        provider.shutdown()
        return {"spans": exported[0], "instrumentation": used}

    return finish


def instrument_httpx_otel(provider: Any) -> str:
    """The stock httpx instrumentation; a minimal span-per-request wrapper if it is missing."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:
        pass
    else:
        HTTPXClientInstrumentor().instrument()
        return "opentelemetry-instrumentation-httpx"
    import httpx
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("bench.httpx")
    original = httpx.HTTPTransport.handle_request

    def handle_request(self: Any, request: httpx.Request) -> httpx.Response:
        attributes = {"http.request.method": request.method, "url.full": str(request.url)}
        with tracer.start_as_current_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            response = original(self, request)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    httpx.HTTPTransport.handle_request = handle_request
    return "minimal httpx span wrapper (opentelemetry-instrumentation-httpx not installed)"


def vcrpy_record(client: str, workdir: str) -> Finish:
    import vcr

    cassette = vcr.VCR(record_mode="all").use_cassette(os.path.join(workdir, "cassette.yaml"))
    recorded = cassette.__enter__()

    def finish() -> dict[str, Any]:
        calls = len(recorded.data)
        cassette.__exit__(None, None, None)
        return {"calls": calls}

    return finish


def agenttrace_record(client: str, workdir: str) -> Finish:
    import agenttrace
    from agenttrace import _session

    agenttrace.init(local_dir=os.path.join(workdir, ".agenttrace"), mode="record")
    session = _session.current()

    def finish() -> dict[str, Any]:
        agenttrace.shutdown()
        assert session is not None and session.store is not None
        path = os.path.join(session.store.directory, "last.json")
        if not os.path.exists(path):
            return {"calls": 0}
        with open(path, encoding="utf-8") as fh:
            events = json.load(fh)["events"]
        return {"calls": sum(1 for e in events if e["kind"] == "http"), "trace": path}

    return finish


def agenttrace_record_without_journal(client: str, workdir: str) -> Finish:
    """The same recording with the run journal switched off (no user setting does that): the
    difference to ``agenttrace`` is what crash-proofing costs per call."""
    from agenttrace.exporters import journal

    journal.supported = lambda: False  # type: ignore[assignment]
    return agenttrace_record(client, workdir)


SETUPS: dict[str, Callable[[str, str], Finish]] = {
    "none": no_instrumentation,
    "otel": plain_otel,
    "vcrpy": vcrpy_record,
    "agenttrace": agenttrace_record,
    "agenttrace-nojournal": agenttrace_record_without_journal,
}


def http_poster(client: str, url: str, floor: bool = False) -> Callable[[int], Any]:
    """``post(i)``: POST payload(i) as JSON over one keep-alive connection, body read.

    ``floor``: the same call answered in memory by the client's own mock transport, below
    which no replay at the transport layer can go (the client's own per-call cost).
    """
    if client == "requests":
        import requests

        session = requests.Session()
        return lambda i: session.post(url, json=payload(i)).content
    import httpx

    if floor:
        from keepalive_server import BODY

        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"content-type": "application/json"}, content=BODY)

        http = httpx.Client(transport=httpx.MockTransport(answer))
    else:
        http = httpx.Client()
    return lambda i: http.post(url, json=payload(i)).content
