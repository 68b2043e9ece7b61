"""The Recorder on its own: a call reported by a client becomes a redacted event on its span."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agenttrace import _trace
from agenttrace._redaction import Redactor
from agenttrace._runs import Runs
from agenttrace.capture import HttpCall
from agenttrace.record import Recorder


@pytest.fixture
def recorder():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runs = Runs(provider.get_tracer("test"), "unit", {"seed": 1}, Redactor().text)
    yield Recorder(runs, Redactor()), exporter
    provider.shutdown()


def _call(**kwargs):
    base = dict(
        method="post",
        url="http://api.test/v1/items?b=2&a=1",
        headers=[("Content-Type", "application/json"), ("Authorization", "Bearer sk-" + "x" * 30)],
        body=b'{"q":"hi","password":"hunter2"}',
        client="unit",
    )
    return HttpCall(**{**base, **kwargs})


def _event(exporter):
    (span,) = [s for s in exporter.get_finished_spans() if _trace.ATTR_EVENT in s.attributes]
    return span, json.loads(span.attributes[_trace.ATTR_EVENT])


def test_a_live_call_becomes_one_redacted_event_on_its_client_span(recorder):
    rec, exporter = recorder
    exchange = rec.begin_http(_call())
    assert exchange.answer is None  # the Recorder always goes live
    exchange.response(200, [(b"Content-Type", b"application/json")], reason="OK")
    exchange.chunk(b'{"ok": ')
    exchange.chunk(b"true}")
    exchange.close()
    span, event = _event(exporter)
    assert span.name == "post" and span.kind.name == "CLIENT"
    assert span.attributes["http.response.status_code"] == 200
    assert event["kind"] == "http" and event["seq"] == exchange.seq
    assert event["request"]["method"] == "POST"
    assert event["request"]["body"] == {"json": {"q": "hi", "password": "[REDACTED]"}}
    assert dict(event["request"]["headers"])["Authorization"] == "Bearer [REDACTED]"
    assert {"request.body.password", "request.headers.authorization"} <= set(event["redacted"])
    assert event["response"]["status"] == 200 and event["response"]["reason"] == "OK"
    # decoded, with the layout that gives back the very bytes the server sent
    assert event["response"]["body"] == {"json": {"ok": True}, "json_layout": "spaced"}


def test_a_stream_keeps_its_chunks_and_an_error_its_type(recorder):
    rec, exporter = recorder
    exchange = rec.begin_http(_call(method="GET", body=None))
    exchange.response(200, [("content-type", "text/event-stream")])
    exchange.chunk(b"data: 1\n\n")
    exchange.fail(TimeoutError("read timed out"))
    span, event = _event(exporter)
    assert [c["text"] for c in event["response"]["chunks"]] == ["data: 1\n\n"]
    assert event["error"]["type"] == "TimeoutError"
    assert event["error"]["message"] == "read timed out"
    assert span.status.status_code.name == "ERROR"


def test_entropy_and_dns_go_into_the_run_log_in_order(recorder):
    rec, _ = recorder
    run = rec.runs.open("unit")
    assert rec.entropy_bytes("os.urandom", 4, lambda n: b"\x01" * n) == b"\x01\x01\x01\x01"
    assert rec.entropy_seed(lambda: 42) == 42
    result = [(2, 1, 6, "", ("127.0.0.1", 80))]
    assert rec.dns_lookup("example.test", 80, lambda: result) == result
    assert [e["kind"] for e in run.events] == ["entropy", "entropy", "dns"]
    assert [e["seq"] for e in run.events] == [1, 2, 3]
    assert run.events[0]["data"] == "AQEBAQ==" and run.events[1]["value"] == "42"
    assert run.events[2]["result"] == [[2, 1, 6, "", ["127.0.0.1", 80]]]
