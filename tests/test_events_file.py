"""A bad events file gets an EventsFileError that names the file and where it breaks."""

from __future__ import annotations

import json

import pytest
from conftest import run_python

from agenttrace import EventsFileError
from agenttrace._trace import FORMAT, load_replay_source

GOOD_EVENT = {
    "seq": 1,
    "kind": "http",
    "request": {"method": "GET", "url": "http://x/", "headers": []},
    "response": {"status": 200, "headers": [], "body": None},
}


def write(tmp_path, text: str):
    path = tmp_path / "events.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        (None, r"events.json: no such events file; record a run first .*agenttrace pull --last"),
        ("", r"events.json: the file is empty"),
        (
            "this is not json",
            r"events.json: line 1 column 1 \(char 0\): Expecting value; it is not valid JSON",
        ),
        (
            json.dumps({"format": FORMAT, "events": [GOOD_EVENT]})[:-12],
            r"events.json: line 1 column \d+ \(char \d+\): .*; the file looks truncated",
        ),
        (
            json.dumps({"format": "agenttrace.trace/0", "events": []}),
            r"format 'agenttrace.trace/0' is not supported; expected 'agenttrace.trace/1'",
        ),
        (json.dumps({"events": []}), r"format None is not supported"),
        (json.dumps({"format": FORMAT}), r"the document has no 'events' list"),
        (json.dumps([{"seq": 1, "kind": "http"}]), r"events\[0\] \(seq 1\) is missing request"),
        (
            json.dumps([{k: v for k, v in GOOD_EVENT.items() if k != "response"}]),
            r"events\[0\] \(seq 1\) has neither 'response' nor 'error'",
        ),
        (json.dumps([GOOD_EVENT, "oops"]), r"events\[1\] is a str, not an object"),
        (
            json.dumps([{**GOOD_EVENT, "request": {"url": "http://x/"}}]),
            r"events\[0\] \(seq 1\) request lacks method/url",
        ),
        (json.dumps(42), r"expected a trace document \(JSON object\) or a list of events, got int"),
    ],
    ids=[
        "missing",
        "empty",
        "not-json",
        "truncated",
        "wrong-version",
        "no-format",
        "no-events",
        "missing-request",
        "no-response",
        "not-object",
        "request-fields",
        "scalar",
    ],
)
def test_bad_events_files(tmp_path, text, message):
    path = tmp_path / "events.json" if text is None else write(tmp_path, text)
    with pytest.raises(EventsFileError, match=message) as info:
        load_replay_source(str(path))
    assert str(path) in str(info.value)


def test_a_good_file_and_a_bare_list_both_load(tmp_path):
    path = write(
        tmp_path, json.dumps({"format": FORMAT, "run": {"seed": 3}, "events": [GOOD_EVENT]})
    )
    run, events, label = load_replay_source(str(path))
    assert run == {"seed": 3} and events == [GOOD_EVENT] and label == str(path)
    assert load_replay_source([GOOD_EVENT])[1] == [GOOD_EVENT]


def test_init_with_a_truncated_file_fails_before_the_agent_runs(tmp_path):
    write(tmp_path, '{"format": "agenttrace.trace/1", "events": [')
    result = run_python(
        """
        import agenttrace
        agenttrace.init()
        print("agent ran")
        """,
        env={"AGENTTRACE_MODE": "replay", "AGENTTRACE_REPLAY_EVENTS_FILE": "events.json"},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "agent ran" not in result.stdout
    assert "EventsFileError: events.json: line 1" in result.stderr
    assert "truncated" in result.stderr
