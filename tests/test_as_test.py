"""A production failure becomes a reproducible test in one command."""

from __future__ import annotations

import subprocess
import sys

from conftest import clean_env, start_server

AGENT = """
import os, requests
reply = requests.get(os.environ["URL"] + "/weather?city=Oslo").json()
temperature = reply["temperature_c"]
if os.environ.get("FIXED") != "1" and not os.path.exists("fixed.txt"):
    raise RuntimeError(f"cannot handle {temperature} C")   # the bug
print("ok", temperature)
"""


def _run(cwd, *args, **env):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_failed_run_becomes_a_test_that_fails_until_the_agent_is_fixed(tmp_path):
    (tmp_path / "agent.py").write_text(AGENT)
    server = start_server()
    try:
        recorded = _run(
            tmp_path,
            "-m",
            "agenttrace.cli",
            "run",
            "--",
            sys.executable,
            "agent.py",
            URL=server.url,
        )
    finally:
        server.stop()
    assert recorded.returncode == 1 and "cannot handle" in recorded.stderr

    pulled = _run(tmp_path, "-m", "agenttrace.cli", "pull", "--last-failure", "--as-test", "tests")
    assert pulled.returncode == 0, pulled.stderr
    tests = sorted((tmp_path / "tests").glob("test_*.py"))
    assert len(tests) == 1 and len(list((tmp_path / "tests" / "traces").glob("*.json"))) == 1
    assert "agenttrace run -- python agent.py" in tests[0].read_text()  # how to re-record

    # the world is gone; the failure reproduces offline, so the test fails
    failing = _run(
        tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", URL=server.url
    )
    assert failing.returncode == 1, failing.stdout
    assert "the recorded failure still happens" in failing.stdout
    assert "cannot handle" in failing.stdout

    (tmp_path / "fixed.txt").write_text("")  # the fix: same I/O, no exception
    passing = _run(
        tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", URL=server.url
    )
    assert passing.returncode == 0, passing.stdout
    assert "1 passed" in passing.stdout


def test_as_test_of_a_trace_that_does_not_say_its_command_is_a_clear_error(tmp_path):
    (tmp_path / "old.json").write_text(
        '{"format": "agenttrace.trace/1", "trace_id": "ab", "run": {"name": "x"}, '
        '"spans": [], "events": []}'
    )
    result = _run(tmp_path, "-m", "agenttrace.cli", "pull", "old.json", "--as-test", "tests")
    assert result.returncode == 2
    assert "does not say which command made it" in result.stderr
