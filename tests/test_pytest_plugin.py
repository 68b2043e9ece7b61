"""The pytest plugin, as a user meets it: a pytest project in a temp dir, run with pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import clean_env, start_server

AGENT = '''
import json, os, random, uuid
import requests

URL = os.environ["AGENT_URL"]

def ask(question):
    """A tiny agent: one LLM call, one tool call."""
    reply = requests.post(URL + "/v1/chat/completions", json={
        "model": "local-model", "messages": [{"role": "user", "content": question}],
    }).json()
    weather = requests.get(URL + "/weather", params={"city": "Paris"}).json()
    return reply["choices"][0]["message"]["content"], weather["city"]
'''

TESTS = """
import asyncio, os, random, socket, uuid
import httpx, pytest
from agent import ask

@pytest.mark.agenttrace
def test_agent_answers(agenttrace_run):
    answer, city = ask(os.environ.get("QUESTION", "Hi"))
    assert city == "Paris" and answer.startswith("Hello!")
    assert agenttrace_run.calls == 2
    print("MODE", agenttrace_run.mode)

@pytest.mark.agenttrace
def test_entropy_one():
    print("ONE", uuid.uuid4(), random.random())

@pytest.mark.agenttrace
def test_entropy_two():
    print("TWO", uuid.uuid4(), random.random())

@pytest.mark.agenttrace
def test_raw_socket_in_replay():
    if os.environ.get("SNEAK"):
        with socket.create_connection(("127.0.0.1", int(os.environ["SNEAK"])), timeout=2):
            pass

@pytest.mark.agenttrace
@pytest.mark.asyncio
async def test_async_agent():
    async with httpx.AsyncClient() as client:
        first, second = await asyncio.gather(
            client.get(os.environ["AGENT_URL"] + "/weather", params={"city": "Oslo"}),
            client.get(os.environ["AGENT_URL"] + "/weather", params={"city": "Rome"}),
        )
    print("ASYNC", first.json()["city"], second.json()["city"], uuid.uuid4())

def test_unmarked_is_untouched():
    assert True
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "agent.py").write_text(textwrap.dedent(AGENT))
    (root / "tests" / "test_agent.py").write_text(textwrap.dedent(TESTS))
    (root / "pytest.ini").write_text("[pytest]\nasyncio_mode = strict\n")
    return root


def _pytest(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(output: str, prefix: str) -> list[str]:
    """What the tests printed after ``prefix`` (pytest puts its progress dots before it)."""
    return sorted(
        line[line.index(prefix + " ") :] for line in output.splitlines() if prefix + " " in line
    )


def test_a_pytest_project_records_once_then_replays_offline(tmp_path, free_port):
    root = _project(tmp_path)
    server = start_server()
    try:
        first = _pytest(root, AGENT_URL=server.url)
        calls = server.request_count
    finally:
        server.stop()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "6 passed" in first.stdout
    assert calls == 4  # two LLM/tool calls plus the two async ones, all live
    traces = root / "tests" / "traces" / "test_agent"
    assert sorted(p.name for p in traces.iterdir()) == [
        "test_agent_answers.json",
        "test_async_agent.json",
        "test_entropy_one.json",
        "test_entropy_two.json",
        "test_raw_socket_in_replay.json",
    ]
    recorded = json.loads((traces / "test_agent_answers.json").read_text())
    assert [e["kind"] for e in recorded["events"] if e["kind"] == "http"] == ["http", "http"]
    assert "MODE record" in first.stdout
    one, two = _lines(first.stdout, "ONE"), _lines(first.stdout, "TWO")
    assert one[0].split()[1:] != two[0].split()[1:]  # each test draws its own values

    # the server is gone: the second run replays everything and passes
    second = _pytest(root, AGENT_URL=server.url)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "6 passed" in second.stdout and "MODE replay" in second.stdout
    for prefix in ("ONE", "TWO", "ASYNC"):
        assert _lines(second.stdout, prefix) == _lines(first.stdout, prefix), prefix

    # a changed request fails only its own test, with the report; a raw socket fails its own
    third = _pytest(root, AGENT_URL=server.url, QUESTION="Something else", SNEAK=str(free_port))
    assert third.returncode == 1, third.stdout
    assert "2 failed, 4 passed" in third.stdout, third.stdout
    assert "FAILED tests/test_agent.py::test_agent_answers" in third.stdout
    assert "FAILED tests/test_agent.py::test_raw_socket_in_replay" in third.stdout
    assert "ReplayDivergence: unrecorded call POST" in third.stdout
    assert f"SandboxEscape: DNS lookup of 127.0.0.1:{free_port}" in third.stdout, third.stdout


def test_replay_mode_without_a_trace_is_an_error_and_record_mode_records_again(tmp_path):
    root = _project(tmp_path)
    missing = _pytest(root, "--agenttrace-mode", "replay", "-k", "entropy_one", AGENT_URL="x")
    assert missing.returncode != 0
    assert "no trace at" in missing.stdout + missing.stderr
    assert "record it with --agenttrace-mode once" in missing.stdout + missing.stderr
    recorded = _pytest(root, "-k", "entropy_one", AGENT_URL="x")
    assert recorded.returncode == 0, recorded.stdout
    trace = root / "tests" / "traces" / "test_agent" / "test_entropy_one.json"
    before = trace.read_text()
    again = _pytest(root, "--agenttrace-mode", "record", "-k", "entropy_one", AGENT_URL="x")
    assert again.returncode == 0
    assert trace.read_text() != before  # recorded afresh: new entropy
    assert _lines(again.stdout, "ONE") != _lines(recorded.stdout, "ONE")
    assert os.path.getsize(trace) > 0
