"""`agenttrace run` and `agenttrace replay` (with counterfactual edits), as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES_DIR, clean_env, start_server

AGENT = EXAMPLES_DIR / "agent.py"
AGENTTRACE = [sys.executable, "-m", "agenttrace.cli"]


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTTRACE, *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def recorded(tmp_path):
    """The weather agent recorded with `agenttrace run`; its server is stopped afterwards."""
    server = start_server()
    try:
        result = _cli(tmp_path, "run", "--", sys.executable, str(AGENT), LLM_SERVER_URL=server.url)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    return tmp_path, server, result


def _events(path: Path) -> list[dict]:
    return json.loads(path.read_text())["events"]


def test_run_records_with_no_init_needed_and_fixes_the_hash_seed(tmp_path):
    server = start_server()
    script = tmp_path / "plain.py"
    script.write_text(
        "import os, requests\n"
        "print(requests.get(os.environ['URL'] + '/weather?city=Oslo').json()['city'])\n"
        "print(os.environ['PYTHONHASHSEED'])\n"
    )
    try:
        result = _cli(tmp_path, "run", "--", sys.executable, str(script), URL=server.url)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    city, seed = result.stdout.split()
    assert city == "Oslo" and seed.isdigit()
    document = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    assert [e["request"]["url"] for e in document["events"] if e["kind"] == "http"] == [
        server.url + "/weather?city=Oslo"
    ]
    assert document["run"]["hash_seed"] == seed  # recorded, so the replay can use it


def test_run_keeps_the_commands_exit_status(tmp_path):
    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nsys.exit(7)\n")
    assert _cli(tmp_path, "run", "--", sys.executable, str(failing)).returncode == 7
    missing = _cli(tmp_path, "run", "--", "no-such-program-xyz")
    assert missing.returncode == 127 and "command not found" in missing.stderr
    assert _cli(tmp_path, "run").returncode == 2


def test_replay_of_the_last_run_is_identical_and_says_so(recorded):
    tmp_path, server, first = recorded
    result = _cli(tmp_path, "replay", "--", sys.executable, str(AGENT), LLM_SERVER_URL=server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == first.stdout
    assert "replayed run written to" in result.stderr
    assert "the replay made every call of the recording" in result.stderr
    assert server.request_count > 0  # (the server answered the recording, never the replay)


def test_a_counterfactual_first_answer_changes_the_tool_the_agent_calls(recorded):
    tmp_path, server, first = recorded
    events = _events(tmp_path / ".agenttrace" / "last.json")
    first_llm = next(
        e for e in events if e["kind"] == "http" and "chat/completions" in e["request"]["url"]
    )
    answer = first_llm["response"]["body"]["json"]
    call = answer["choices"][0]["message"]["tool_calls"][0]
    call["function"]["arguments"] = json.dumps({"city": "Berlin"})
    answer["choices"][0]["message"]["tool_calls"] = [call]  # one city instead of two
    edit = tmp_path / "berlin.json"
    edit.write_text(json.dumps(answer))

    # governance, the world stopped: the edited answer is served, the agent follows it, and the
    # first call that no longer matches stops the run with the divergence report
    governed = _cli(
        tmp_path,
        "replay",
        "--edit",
        f"{first_llm['seq']}={edit}",
        "--",
        sys.executable,
        str(AGENT),
        LLM_SERVER_URL=server.url,
    )
    assert governed.returncode != 0
    assert 'wants get_weather({"city": "Berlin"})' in governed.stdout
    assert "Paris" not in governed.stdout.split("wants get_weather")[1]
    assert "ReplayDivergence" in governed.stderr and "city=Berlin" in governed.stderr
    assert "first divergence" in governed.stderr

    # relaxed, the world back: the run goes on live from there and answers about Berlin
    live = start_server(port=int(server.url.rsplit(":", 1)[1]))
    try:
        relaxed = _cli(
            tmp_path,
            "replay",
            "--relaxed",
            "--edit",
            f"{first_llm['seq']}={edit}",
            "--",
            sys.executable,
            str(AGENT),
            LLM_SERVER_URL=server.url,
        )
    finally:
        live.stop()
    assert relaxed.returncode == 0, relaxed.stderr
    assert "In Berlin it is" in relaxed.stdout and "In Paris" not in relaxed.stdout
    replayed = _events(tmp_path / ".agenttrace" / "replays" / "last.json")
    assert any("city=Berlin" in e["request"]["url"] for e in replayed if e["kind"] == "http")


@pytest.mark.parametrize(
    "edit, message",
    [
        ("999={file}", "the trace has no event #999"),
        ("{entropy}={file}", "not an answer to edit"),
        ("x={file}", "SEQ must be an event number"),
        ("3={bad}", "is not JSON (line 1 column"),
        ("3", "expected SEQ=FILE"),
    ],
)
def test_bad_edits_are_one_line_errors(recorded, edit, message):
    tmp_path, server, _ = recorded
    good = tmp_path / "good.json"
    good.write_text("{}")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    events = _events(tmp_path / ".agenttrace" / "last.json")
    entropy = next(e["seq"] for e in events if e["kind"] == "entropy")
    spec = edit.format(file=good, bad=bad, entropy=entropy)
    result = _cli(tmp_path, "replay", "--edit", spec, "--", sys.executable, str(AGENT))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_counterfactual_tool_result_is_served_instead_of_running_the_tool(recorded):
    tmp_path, server, first = recorded
    events = _events(tmp_path / ".agenttrace" / "last.json")
    tool = next(e for e in events if e["kind"] == "tool" and e["name"] == "advice.lookup")
    edit = tmp_path / "advice.json"
    edit.write_text(json.dumps("stay indoors"))
    result = _cli(
        tmp_path,
        "replay",
        "--edit",
        f"{tool['seq']}={edit}",
        "--",
        sys.executable,
        str(AGENT),
        LLM_SERVER_URL=server.url,
    )
    assert result.returncode == 0, result.stderr
    assert "advice   Paris: stay indoors" in result.stdout
    assert result.stdout.replace("stay indoors", "take an umbrella") == first.stdout
    assert "first divergence" in result.stderr  # the replay's answer differs from the recording
