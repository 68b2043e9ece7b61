"""The Player on its own: matching, recorded order, divergence text, entropy per flow."""

from __future__ import annotations

import base64
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider

from agenttrace._redaction import Redactor
from agenttrace._runs import Runs
from agenttrace.capture import HttpCall
from agenttrace.errors import ReplayDivergence, SandboxEscape
from agenttrace.governance import Governance
from agenttrace.replay import ReplayEngine, ReplaySpanProcessor
from agenttrace.replay.divergence import unrecorded_call


def _http(seq, url, body=None, answer="ok", step=None):
    return {
        "seq": seq,
        "kind": "http",
        "step": step,
        "request": {"method": "POST", "url": url, "headers": [], "body": body},
        "response": {"status": 200, "headers": [], "body": {"text": answer}},
    }


class _Store:
    def __init__(self):
        self.records = []

    def add_record(self, trace_id, record):
        self.records.append(record)


def _player(events, strict=True):
    provider = TracerProvider()
    runs = Runs(provider.get_tracer("test"), "unit", {}, Redactor().text)
    gate = Governance(strict)
    return ReplaySpanProcessor(ReplayEngine(events, "unit.json"), runs, Redactor(), gate, _Store())


def _call(url, body=b""):
    return HttpCall("POST", url, [("content-type", "application/json")], body, "unit")


def test_equal_calls_are_answered_in_recorded_order_and_json_compares_by_content():
    player = _player(
        [
            _http(1, "http://a.test/x?b=1&a=2", {"json": {"k": 1, "j": 2}}, "first"),
            _http(2, "http://a.test/x?a=2&b=1", {"json": {"j": 2, "k": 1}}, "second"),
        ]
    )
    answers = []
    for body in (b'{"j": 2, "k": 1}', b'{"k":1,"j":2}'):  # other bytes, same JSON
        exchange = player.begin_http(_call("http://a.test/x?a=2&b=1", body))
        answers.append(exchange.answer.body())
        exchange.close()
    assert answers == [b"first", b"second"]
    assert player.unplayed() == []


def test_an_unrecorded_call_under_governance_names_the_step_and_the_closest_candidate():
    player = _player([_http(1, "http://a.test/x", {"json": {"city": "Paris"}}, step="Lookup")])
    with pytest.raises(ReplayDivergence) as raised:
        player.begin_http(_call("http://a.test/x", b'{"city": "Berlin"}'))
    message = str(raised.value)
    assert "unrecorded call POST http://a.test/x outside any step" in message
    assert (
        '#1 POST http://a.test/x (step \'Lookup\'): body differs: body.city: recorded "Paris", now "Berlin"'
        in message
    )
    assert player.gate.violations and player.unplayed()  # sticky, and still unplayed
    assert player.report() is True


def test_unrecorded_call_text_when_everything_was_replayed():
    engine = ReplayEngine([], "empty.json")
    text = unrecorded_call(engine, {"method": "GET", "url": "http://x.test/", "body": None}, "S")
    assert text.splitlines() == [
        "unrecorded call GET http://x.test/ in step 'S'.",
        "Every recorded call has already been replayed.",
        "Recording: empty.json",
    ]


def test_entropy_is_served_per_flow_and_beyond_the_recording_is_an_escape():
    def draw(seq, flow, data):
        return {
            "seq": seq,
            "kind": "entropy",
            "source": "os.urandom",
            "flow": flow,
            "data": base64.b64encode(data).decode(),
        }

    player = _player([draw(1, "main|Task-2", b"AAAA"), draw(2, "main|Task-3", b"BBBB")])
    engine = player.engine
    assert engine.entropy("os.urandom", 4, "main|Task-3") == b"BBBB"  # its own draw first
    assert engine.entropy("os.urandom", 4, "main|Task-9") == b"AAAA"  # else the next in line
    with pytest.raises(SandboxEscape, match=r"os.urandom\(4\) was called more often"):
        player.entropy_bytes("os.urandom", 4, lambda n: b"\0" * n)


def test_relaxed_lets_an_unrecorded_call_go_live_and_counts_it():
    player = _player([], strict=False)
    exchange = player.begin_http(_call("http://a.test/new"))
    assert exchange.answer is None and player.gate.passthrough == 1  # going live
    exchange.close()
    assert player.gate.passthrough == 0
    assert player.report() is False and len(player.gate.violations) == 1


def test_a_body_that_differs_only_in_timestamps_says_the_clock_was_replayed():
    from agenttrace.replay.divergence import CLOCK_HINT, body_diff

    recorded = json.dumps({"data": [{"id": 1, "ended_at": "2026-12-01T10:00:00.123456+00:00"}]})
    now = json.dumps({"data": [{"id": 1, "ended_at": "2026-12-01T10:00:02.654321+00:00"}]})
    text = body_diff(recorded, now)
    assert text.startswith('body.data[0].ended_at: recorded "2026-12-01T10:00:00.123456+00:00"')
    assert text.endswith(CLOCK_HINT)
    epoch = body_diff(json.dumps({"t": 1764583200123}), json.dumps({"t": 1764583202000}))
    assert epoch.endswith(CLOCK_HINT)
    # anything else that differs is not blamed on the clock
    mixed = body_diff(
        json.dumps({"t": 1764583200, "q": "a"}), json.dumps({"t": 1764583201, "q": "b"})
    )
    assert CLOCK_HINT not in mixed and "body.q" in mixed
