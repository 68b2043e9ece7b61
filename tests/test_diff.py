"""`agenttrace diff`: a recording against its replay (equivalent), against a run that asked
something else (the first divergence named by JSON path), and the alignment rules on their own."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from _recorded import Recording, record, replay
from conftest import cli
from llm_server import LLMServer

from agenttrace import _diff, _trace


@pytest.fixture(scope="module")
def recording(module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return record(tmp_path_factory.mktemp("diff"), module_llm_server.url)


@pytest.fixture(scope="module")
def oslo(module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """The same agent asked about one city instead of two."""
    return record(
        tmp_path_factory.mktemp("diff-oslo"),
        module_llm_server.url,
        QUESTION="What is the weather in Oslo?",
    )


def test_a_recording_and_its_replay_are_equivalent(
    recording: Recording, module_llm_server: LLMServer
) -> None:
    replayed = replay(recording, module_llm_server.url)
    assert replayed.returncode == 0, replayed.stderr
    result = cli("diff", "last", "last-replay", cwd=recording.workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("A: .agenttrace/last.json  look_agent  ok  9 calls")
    assert lines[1].startswith("B: .agenttrace/replays/last.json  look_agent  ok  9 calls")
    assert "calls: 9 equal, 0 changed, 0 added, 0 removed" in lines
    assert lines[-1] == "equivalent"
    as_json = json.loads(
        cli("diff", "--json", str(recording.path), "last-replay", cwd=recording.workdir).stdout
    )
    assert as_json["equivalent"] is True and as_json["first_divergence"] is None
    assert as_json["a"]["trace_id"] == recording.document["trace_id"] != as_json["b"]["trace_id"]
    assert (
        as_json["a"]["usage"] == as_json["b"]["usage"] and as_json["a"]["usage"]["input_tokens"] > 0
    )


def test_another_question_diverges_at_the_first_llm_call(
    recording: Recording, oslo: Recording
) -> None:
    result = cli("diff", str(recording.path), str(oslo.path), cwd=recording.workdir)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    first = out.split("first divergence:\n", 1)[1].splitlines()
    assert first[0].startswith("  ~ changed A #2 / B #2  http  POST http://127.0.0.1:")
    assert first[0].endswith("/v1/chat/completions  in step 'Choose tools'")
    assert (
        '      request.body.messages[1].content: "What is the weather in Paris and Tokyo?" → '
        '"What is the weather in Oslo?"'
    ) in first
    assert any(
        line.startswith("      response.body.choices[0].message.tool_calls: 2 items → 1 items")
        for line in first
    )
    assert "calls: 5 equal, 3 changed, 0 added, 1 removed" in out
    assert "  - removed A #4  http  GET http" in out and "city=Tokyo" in out
    assert "tokens: " in out and out.rstrip().endswith("not equivalent")

    data = json.loads(
        cli("diff", "--json", str(recording.path), str(oslo.path), cwd=recording.workdir).stdout
    )
    assert data["equivalent"] is False
    assert data["counts"] == {"equal": 5, "changed": 3, "added": 0, "removed": 1}
    first_json = data["first_divergence"]
    assert first_json["a"]["seq"] == 2 and first_json["a"]["step"] == "Choose tools"
    assert first_json["request"][0].startswith("request.body.messages[1].content: ")
    a_tokens = data["a"]["usage"]["input_tokens"] + data["a"]["usage"]["output_tokens"]
    b_tokens = data["b"]["usage"]["input_tokens"] + data["b"]["usage"]["output_tokens"]
    assert a_tokens != b_tokens
    assert f"tokens: {a_tokens:,} → {b_tokens:,} ({b_tokens - a_tokens:+,})" in out


def test_a_run_that_ended_otherwise_is_not_equivalent(
    recording: Recording, module_llm_server: LLMServer, tmp_path: Path
) -> None:
    failed = record(tmp_path / "failed", module_llm_server.url, FAIL="1")
    result = cli("diff", str(recording.path), str(failed.path), cwd=tmp_path)
    assert result.returncode == 1
    assert "every call is the same; the runs ended differently" in result.stdout
    assert "run status: ok → error (RuntimeError: the agent gave up)" in result.stdout


# -- the rules, on documents made from the recording -----------------------------------------------


def _variant(document: dict[str, Any]) -> dict[str, Any]:
    """The recording as a replay would differ from it in everything that must not count."""
    other = copy.deepcopy(document)
    other["trace_id"] = "f" * 32
    other["run"]["started_at"] = "2030-01-01T00:00:00Z"
    for index, event in enumerate(other["events"]):
        event["seq"] = 100 + index
        event["span_id"] = f"{index:016x}"
        event["duration_ms"] = 1234.5
        event["step"] = "renamed"
        event.pop("client", None)
        if event["kind"] != "http":
            continue
        headers = event["request"]["headers"]
        headers[:] = [[k, v] for k, v in headers if k.lower() not in ("user-agent", "traceparent")]
        headers += [
            ["User-Agent", "other/9"],
            ["traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"],
        ]
        headers += [["X-Stainless-Retry-Count", "3"], ["Idempotency-Key", "abc"]]
        response = event["response"]
        response["headers"] = [
            [k, "Mon, 01 Jan 2030 00:00:00 GMT" if k.lower() == "date" else v]
            for k, v in response["headers"]
        ]
        response["headers"].append(["x-ratelimit-remaining-requests", "41"])
        if "chunks" in response:  # the same stream, read in other pieces at other times
            text = "".join(c["text"] for c in response["chunks"])
            response["chunks"] = [
                {"at_ms": 99.0, "text": text[i : i + 7]} for i in range(0, len(text), 7)
            ]
        body = event["request"].get("body")
        if body and "json" in body:  # the same JSON, laid out otherwise
            event["request"]["body"] = {"text": json.dumps(body["json"], indent=2)}
    return other


def test_what_always_differs_between_runs_never_counts(recording: Recording) -> None:
    comparison = _diff.compare(recording.document, _variant(recording.document))
    assert comparison.equivalent, [p.to_json() for p in comparison.pairs if p.op != "equal"]
    assert comparison.counts()["equal"] == 9


def test_a_real_header_change_counts(recording: Recording) -> None:
    other = _variant(recording.document)
    claude = next(
        e
        for e in other["events"]
        if e["kind"] == "http" and e["request"]["url"].endswith("/v1/messages")
    )
    claude["request"]["headers"].append(["anthropic-beta", "prompt-caching-2024-07-31"])
    comparison = _diff.compare(recording.document, other)
    assert not comparison.equivalent
    first = comparison.first_divergence
    assert first.op == "changed" and first.b is claude
    assert first.request == [
        'request.headers.anthropic-beta: (absent) → "prompt-caching-2024-07-31"'
    ]
    assert first.answer == []


def test_an_inserted_call_leaves_the_rest_aligned(recording: Recording) -> None:
    events = recording.document["events"]
    weather = next(e for e in events if "/weather" in e.get("request", {}).get("url", ""))
    extra = copy.deepcopy(weather)
    extra["request"]["url"] = extra["request"]["url"].replace("Paris", "Lima")
    position = events.index(weather)
    inserted = [*events[:position], extra, *events[position:]]
    pairs = _diff.align(events, inserted)
    assert [p.op for p in pairs].count("equal") == 9
    assert [(p.op, p.b is extra) for p in pairs if p.op != "equal"] == [("added", True)]
    removed = _diff.align(inserted, events)
    assert [(p.op, p.a is extra) for p in removed if p.op != "equal"] == [("removed", True)]


def test_a_changed_stream_is_diffed_by_event(recording: Recording) -> None:
    other = copy.deepcopy(recording.document)
    streamed = next(e for e in other["events"] if "chunks" in e.get("response", {}))
    chunks = streamed["response"]["chunks"]
    chunks[-1]["text"] = chunks[-1]["text"].replace('"prompt_tokens": 35', '"prompt_tokens": 36')
    (pair,) = [
        p for p in _diff.align(recording.document["events"], other["events"]) if p.op != "equal"
    ]
    assert pair.request == []
    (difference,) = pair.answer
    assert re.fullmatch(r"response\.stream\[\d+\]\.usage\.prompt_tokens: 35 → 36", difference)


def test_other_kinds_align_on_what_they_asked(recording: Recording) -> None:
    def tool(name: str, result: Any, seq: int) -> dict[str, Any]:
        return {
            "seq": seq,
            "kind": "tool",
            "name": name,
            "args": [1],
            "result": result,
            "span_id": "a" * 16,
        }

    a = [
        tool("lookup", {"x": 1}, 1),
        tool("charge", "ok", 2),
        {"seq": 3, "kind": "entropy", "source": "os.urandom", "data": "AA=="},
    ]
    b = [tool("lookup", {"x": 2}, 7), tool("charge", "ok", 9)]
    pairs = _diff.align(a, b)
    assert [p.op for p in pairs] == ["changed", "equal"]
    assert pairs[0].answer == ["response.result.x: 1 → 2"]
    comparison = _diff.compare(
        {"run": {"status": "ok"}, "events": a}, {"run": {"status": "ok"}, "events": b}
    )
    assert comparison.a.facts == {"entropy": 1} and comparison.b.facts == {}


def test_bad_input_for_diff(recording: Recording, tmp_path: Path) -> None:
    missing = cli("diff", str(recording.path), str(tmp_path / "gone.json"), cwd=tmp_path)
    assert missing.returncode == 2 and "gone.json: no such events file" in missing.stderr
    usage = cli("diff", str(recording.path), cwd=tmp_path)
    assert usage.returncode == 2 and "the following arguments are required: B" in usage.stderr


def test_diff_of_two_20k_event_runs(recording: Recording) -> None:
    events = []
    while len(events) < 20_000:
        events += [
            {**e, "seq": len(events) + i + 1} for i, e in enumerate(recording.document["events"])
        ]
    big = {**recording.document, "events": events}
    changed = copy.deepcopy(big)
    middle = [e for e in changed["events"] if e["kind"] == "http"][5000]
    middle["response"] = {**middle["response"], "status": 503}  # replicas share the original
    started = time.perf_counter()
    a, _ = _trace.load_document(big)
    b, _ = _trace.load_document(changed)
    comparison = _diff.compare(a, b)
    elapsed = time.perf_counter() - started
    assert comparison.counts()["changed"] == 1 and comparison.first_divergence.b is middle
    assert elapsed < 30, f"diff of 2 × 20k events took {elapsed:.1f} s"
    print(f"diff of 2 × 20k events: {elapsed:.2f} s")
