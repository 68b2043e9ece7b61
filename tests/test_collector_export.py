"""Export to the user's collector (OTEL_EXPORTER_OTLP_*), and living with the app's own
TracerProvider: spans reach a real OTLP/HTTP receiver, once each, beside the local store."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from _otlp_receiver import OTLPReceiver
from conftest import run_python

AGENT = """
import os, httpx2, agenttrace
agenttrace.init()
with agenttrace.run(name="collector_agent"):
    with agenttrace.step("Fetch", type="tool_call"):
        print(httpx2.get(os.environ["URL"] + "/weather?city=Oslo").json()["city"])
"""


@pytest.fixture
def receiver():
    with OTLPReceiver() as r:
        yield r


def _names(spans):
    return sorted(s["name"] for s in spans)


def _assert_once(spans):
    counts = Counter(s["span_id"] for s in spans)
    assert all(n == 1 for n in counts.values()), counts


def test_spans_reach_the_collector_and_the_local_store(tmp_path, llm_server, receiver):
    result = run_python(
        AGENT,
        env={
            "URL": llm_server.url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "weather-agent",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=agents",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Oslo\n"
    spans = receiver.spans
    assert _names(spans) == ["Fetch", "GET", "collector_agent"]
    _assert_once(spans)
    assert {e.path for e in receiver.exports} == {"/v1/traces"}
    resource = spans[0]["resource"]
    assert resource["service.name"] == "weather-agent"
    assert resource["deployment.environment"] == "test" and resource["team"] == "agents"
    http = next(s for s in spans if s["name"] == "GET")
    assert http["attributes"]["agenttrace.seq"] >= 1
    assert http["attributes"]["url.full"].endswith("/weather?city=Oslo")
    # ... and the local store still has the whole run
    doc = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    assert doc["run"]["name"] == "collector_agent"
    assert [e["request"]["url"] for e in doc["events"] if e["kind"] == "http"] == [
        llm_server.url + "/weather?city=Oslo"
    ]
    assert {s["span_id"] for s in doc["spans"]} == {s["span_id"] for s in spans}


def test_standard_variables_are_honoured(tmp_path, llm_server, receiver):
    result = run_python(
        AGENT,
        env={
            "URL": llm_server.url,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/custom/traces",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=acme,authorization=Bearer%20t0k",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert receiver.exports, result.stderr
    for export in receiver.exports:
        assert export.path == "/custom/traces"
        assert export.gzipped
        assert export.headers["x-tenant"] == "acme"
        assert export.headers["authorization"] == "Bearer t0k"
    assert _names(receiver.spans) == ["Fetch", "GET", "collector_agent"]


def test_resource_attributes_service_name_beats_the_script_name(tmp_path, llm_server, receiver):
    result = run_python(
        AGENT,
        env={
            "URL": llm_server.url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert {s["resource"]["service.name"] for s in receiver.spans} == {"from-attributes"}


def test_replay_sends_nothing_to_the_collector(tmp_path, llm_server, receiver):
    env = {"URL": llm_server.url}
    assert run_python(AGENT, env=env, cwd=tmp_path).returncode == 0
    result = run_python(
        AGENT,
        env={
            **env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(tmp_path / ".agenttrace" / "last.json"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Oslo\n"
    assert receiver.exports == []


def test_a_dead_collector_does_not_change_the_run(tmp_path, llm_server, free_port):
    result = run_python(
        AGENT,
        env={
            "URL": llm_server.url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Oslo\n"
    assert (tmp_path / ".agenttrace" / "last.json").exists()


# -- the app's own TracerProvider, set up before init() ---------------------------------------

APP_WITH_PROVIDER = """
import json, os, sys, httpx2
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

app_exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "my-app"}))
provider.add_span_processor(SimpleSpanProcessor(app_exporter))
if os.environ.get("APP_OTLP"):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

import agenttrace
agenttrace.init()
tracer = trace.get_tracer("my-app")
with tracer.start_as_current_span("app.request"):
    with agenttrace.run(name="agent"):
        with agenttrace.step("Fetch", type="tool_call"):
            print(httpx2.get(os.environ["URL"] + "/weather?city=Lima").json()["city"])
    with tracer.start_as_current_span("app.after"):
        print(httpx2.get(os.environ["URL"] + "/weather?city=Rome").json()["city"])
agenttrace.shutdown()
provider.shutdown()
spans = app_exporter.get_finished_spans()
print(json.dumps({
    "names": sorted(s.name for s in spans),
    "ids": [format(s.context.span_id, "016x") for s in spans],
    "same_provider": trace.get_tracer_provider() is provider,
}))
"""


def _app(tmp_path, server, **env):
    result = run_python(APP_WITH_PROVIDER, env={"URL": server.url, **env}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Overriding of current TracerProvider" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Lima", "Rome"]
    return json.loads(lines[2]), result


def test_existing_provider_keeps_its_exporters_and_gets_ours(tmp_path, llm_server):
    app, _ = _app(tmp_path, llm_server)
    assert app["same_provider"]
    # the app's exporter sees its own spans and ours, each once
    for name in ("app.request", "app.after", "agent", "Fetch"):
        assert name in app["names"], app["names"]
    assert app["names"].count("GET") == 2
    assert len(app["ids"]) == len(set(app["ids"]))
    # our local store has both calls: the one in the explicit run, and the one made under the
    # app's own span (outside any run), which belongs to the implicit run's trace
    traces = [
        json.loads(p.read_text()) for p in sorted((tmp_path / ".agenttrace" / "traces").iterdir())
    ]
    urls = sorted(
        e["request"]["url"].rsplit("=", 1)[1]
        for doc in traces
        for e in doc["events"]
        if e["kind"] == "http"
    )
    assert urls == ["Lima", "Rome"]


def test_existing_provider_with_otlp_exporter_gets_no_duplicate(tmp_path, llm_server, receiver):
    app, _ = _app(tmp_path, llm_server, APP_OTLP="1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    spans = receiver.spans
    _assert_once(spans)
    assert sorted(s["span_id"] for s in spans) == sorted(app["ids"])
    assert {s["resource"]["service.name"] for s in spans} == {"my-app"}


def test_existing_provider_without_otlp_gets_our_collector_export(tmp_path, llm_server, receiver):
    app, _ = _app(tmp_path, llm_server, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    spans = receiver.spans
    _assert_once(spans)
    assert sorted(s["span_id"] for s in spans) == sorted(app["ids"])


# -- the factory, in process ---------------------------------------------------------------------


@pytest.fixture
def otlp_env(monkeypatch):
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _exporter(processor):
    exporter = processor.span_exporter
    return f"{type(exporter).__module__}.{type(exporter).__name__}"


def test_no_endpoint_no_processor(otlp_env):
    from agenttrace.exporters.collector import collector_processor

    assert collector_processor() is None


def test_protocol_selection(otlp_env):
    from agenttrace.exporters.collector import collector_processor

    otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    processor = collector_processor()
    assert _exporter(processor).startswith("opentelemetry.exporter.otlp.proto.http.")
    processor.shutdown()

    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    otlp_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    otlp_env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")  # the per-signal one wins
    processor = collector_processor()
    assert _exporter(processor).startswith("opentelemetry.exporter.otlp.proto.grpc.")
    processor.shutdown()


def test_unknown_protocol_is_logged_not_raised(otlp_env, caplog):
    from agenttrace.exporters.collector import collector_processor

    otlp_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    otlp_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with caplog.at_level(logging.ERROR, logger="agenttrace"):
        assert collector_processor() is None
    assert "carrier-pigeon" in caplog.text


def test_retry_jitter_does_not_draw_from_the_agents_random(otlp_env):
    import random

    from agenttrace.exporters.collector import collector_processor

    otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    processor = collector_processor()
    processor.shutdown()
    from opentelemetry.exporter.otlp.common import http as otlp_http

    random.seed(7)
    expected = random.random()
    random.seed(7)
    otlp_http.random.uniform(0.8, 1.2)  # what a retry does
    assert random.random() == expected


def test_every_exporter_sits_behind_the_one_scrubbing_processor(otlp_env, tmp_path):
    import agenttrace
    from agenttrace import _session
    from agenttrace._scrub_spans import ScrubbingSpanProcessor

    otlp_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    session = _session.Session(agenttrace._config.resolve({"local_dir": str(tmp_path)}))
    assert isinstance(session.spans, ScrubbingSpanProcessor)  # nothing leaves unscrubbed
    names = [_exporter(p) for p in session.spans.processors if hasattr(p, "span_exporter")]
    assert names and names[0].startswith("opentelemetry.exporter.otlp.proto.http.")
    for processor in session.spans.processors:
        processor.shutdown()


def test_scrubbing_processor_hands_on_scrubbed_spans_and_withholds_what_it_cannot_scrub():
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    from agenttrace._redaction import Redactor
    from agenttrace._scrub_spans import ScrubbingSpanProcessor

    class Collect(SpanProcessor):
        def __init__(self):
            self.spans = []

        def on_end(self, span):
            self.spans.append(span)

    inner = Collect()
    processor = ScrubbingSpanProcessor(Redactor(), [inner])
    processor.on_end(ReadableSpan(name="s", attributes={"user.password": "hunter2-hunter2"}))
    assert inner.spans[0].attributes["user.password"] == "[REDACTED]"

    class Broken(Redactor):
        def text(self, value):
            raise ValueError("boom")

    # a failing scrubber withholds the strings rather than leak them
    ScrubbingSpanProcessor(Broken(), [inner]).on_end(
        ReadableSpan(name="t", attributes={"note": "sk-live-0123456789abcdefghij"})
    )
    assert inner.spans[1].attributes["note"] == "[REDACTED]"


def test_spans_are_scrubbed_before_they_reach_the_collector(tmp_path, llm_server, receiver):
    script = """
    import os, httpx2, agenttrace
    from opentelemetry import trace
    agenttrace.init()
    secrets = {"http.request.header.authorization": "Bearer s3cr3t-t0ken-value-0001",
               "user.password": "hunter2-hunter2"}
    with trace.get_tracer("my-app").start_as_current_span("app.login", attributes=secrets):
        url = os.environ["URL"] + "/weather?city=Oslo&api_key=sk-live-0123456789abcdefghij"
        print(httpx2.get(url).json()["city"])
    """
    result = run_python(
        script,
        env={"URL": llm_server.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Oslo\n"
    spans = receiver.spans
    assert {"app.login", "GET"} <= {s["name"] for s in spans}
    exported = json.dumps(spans)
    for secret in ("s3cr3t-t0ken-value-0001", "hunter2-hunter2", "0123456789abcdefghij"):
        assert secret not in exported, secret
