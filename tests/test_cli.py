"""The `agenttrace` CLI: serve, pull and flush as real processes, and the whole backend path:
an agent records to `agenttrace serve`, `agenttrace pull --last` fetches the run, and the
pulled document replays the run offline."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import agenttrace_serve, cli, free_port, run_python

from agenttrace.cli import main

KEY = "at_test_cli_0123456789abcdefghijklmnopqrs"
OTHER_KEY = "at_live_cli_other_0123456789abcdefghijk"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with agenttrace_serve(
        tmp_path_factory.mktemp("server"), "--api-key", KEY, "--api-key", OTHER_KEY, db_name="t.db"
    ) as served:
        yield served.url


def backend_env(server: str, tmp_path: Path, key: str = KEY) -> dict[str, str]:
    return {
        "AGENTTRACE_API_KEY": key,
        "AGENTTRACE_API_URL": server,
        "AGENTTRACE_SPOOL_DIR": str(tmp_path / "spool"),
    }


# -- help and usage -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["serve"], ["pull"], ["flush"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: agenttrace" in capsys.readouterr().out


def test_usage_errors_are_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["pull"])  # needs TRACE_ID, --last or --last-failure
    assert exit_info.value.code == 2
    assert "one of the arguments" in capsys.readouterr().err


def test_runs_as_a_module() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "pull" in result.stdout and "flush" in result.stdout


# -- serve ----------------------------------------------------------------------------------------


def test_serve_generates_a_key_prints_it_once_and_reuses_it(tmp_path: Path) -> None:
    with agenttrace_serve(tmp_path, db_name="t.db") as first:
        pass
    key = first.stdout.strip()
    assert key.startswith("at_test_") and len(key) > 30
    assert "generated an API key" in first.stderr

    with agenttrace_serve(tmp_path, db_name="t.db") as second:
        listing = requests.get(
            second.url + "/api/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert listing.status_code == 200
    assert key not in second.stdout + second.stderr
    assert "using the API key stored in" in second.stderr
    # The database never holds the key, only the file next to it does.
    assert all(
        key.encode() not in p.read_bytes() for p in tmp_path.glob("t.db*") if p.name != "t.db.keys"
    )


def test_serve_refuses_keys_the_sdk_would_never_send(tmp_path: Path) -> None:
    result = cli("serve", "--db", str(tmp_path / "t.db"), "--api-key", "hunter2-secret-value")
    assert result.returncode == 2
    assert "at_live_ or at_test_" in result.stderr
    assert "hunter2-secret-value" not in result.stderr


# -- pull -----------------------------------------------------------------------------------------

AGENT = """
import os, random, sys, uuid
import httpx2, openai
import agenttrace

agenttrace.init()
URL = os.environ["URL"]

@agenttrace.run(name=os.environ.get("RUN_NAME", "cli_agent"))
def main():
    print("run", uuid.uuid4(), random.random())
    client = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test-not-real")
    with agenttrace.step("Planning", type="llm"):
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "What is the weather in Oslo?"}])
    print("model", reply.choices[0].message.content, reply.choices[0].message.tool_calls)
    with agenttrace.step("Weather", type="tool_call"):
        print("weather", httpx2.get(URL + "/weather", params={"city": "Oslo"}).json())
    if os.environ.get("FAIL"):
        raise RuntimeError("the agent gave up")

main()
"""


def test_an_agent_run_lands_in_the_backend_and_pull_last_replays_it_offline(
    server: str, tmp_path: Path, llm_server
) -> None:
    env = {**backend_env(server, tmp_path), "URL": llm_server.url}
    recorded = run_python(AGENT, env=env, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    assert not (tmp_path / ".agenttrace" / "last.json").exists()  # it went to the backend
    assert recorded.stderr.splitlines()[-1].startswith("agenttrace: ")
    assert f"spans sent to {server}" in recorded.stderr.splitlines()[-1]

    listing = requests.get(
        server + "/api/v1/traces", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    latest = listing.json()["traces"][0]
    assert latest["name"] == "cli_agent" and latest["status"] == "ok"
    other = requests.get(
        server + "/api/v1/traces", headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=10
    )
    assert latest["trace_id"] not in [t["trace_id"] for t in other.json()["traces"]]

    pulled = cli("pull", "--last", cwd=tmp_path, **backend_env(server, tmp_path))
    assert pulled.returncode == 0, pulled.stderr
    path = tmp_path / f"{latest['trace_id']}.json"
    document = json.loads(path.read_text())
    assert document["format"] == "agenttrace.trace/1"
    assert document["run"]["name"] == "cli_agent"
    http = [e for e in document["events"] if e["kind"] == "http"]
    assert [e["request"]["method"] for e in http] == ["POST", "GET"]
    assert str(path.name) in pulled.stderr

    served = llm_server.request_count
    replayed = run_python(
        AGENT,
        env={
            "URL": llm_server.url,
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(path),
        },
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert llm_server.request_count == served


def test_pull_last_failure_and_by_id_and_to_stdout(server: str, tmp_path: Path, llm_server) -> None:
    env = {**backend_env(server, tmp_path), "URL": llm_server.url}
    failed = run_python(AGENT, env={**env, "RUN_NAME": "doomed", "FAIL": "1"}, cwd=tmp_path)
    assert failed.returncode != 0
    assert run_python(AGENT, env={**env, "RUN_NAME": "fine"}, cwd=tmp_path).returncode == 0

    out = tmp_path / "failure.json"
    result = cli(
        "pull", "--last-failure", "-o", str(out), cwd=tmp_path, **backend_env(server, tmp_path)
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["run"]["name"] == "doomed" and document["run"]["status"] == "error"
    assert "the agent gave up" in document["run"]["error"]

    by_id = cli(
        "pull", document["trace_id"], "-o", "-", cwd=tmp_path, **backend_env(server, tmp_path)
    )
    assert by_id.returncode == 0, by_id.stderr
    assert json.loads(by_id.stdout) == document


def test_pull_errors_are_one_line_and_never_show_the_key(server: str, tmp_path: Path) -> None:
    missing = cli("pull", "0" * 31 + "1", cwd=tmp_path, **backend_env(server, tmp_path))
    assert missing.returncode == 1
    assert "not found" in missing.stderr

    wrong = "at_test_wrong_0000000000000000000000000"
    rejected = cli("pull", "--last", cwd=tmp_path, **backend_env(server, tmp_path, key=wrong))
    assert rejected.returncode == 1
    assert "rejected API key at_test_…" in rejected.stderr
    assert wrong not in rejected.stderr and wrong[8:] not in rejected.stderr

    down = cli(
        "pull", "--last", cwd=tmp_path, **backend_env(f"http://127.0.0.1:{free_port()}", tmp_path)
    )
    assert down.returncode == 1 and "cannot reach the backend" in down.stderr

    no_key = cli("pull", "--last", cwd=tmp_path)
    assert no_key.returncode == 2 and "AGENTTRACE_API_KEY" in no_key.stderr
    for result in (missing, rejected, down, no_key):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert KEY not in result.stderr


# -- flush ----------------------------------------------------------------------------------------


def test_flush_with_an_empty_spool(tmp_path: Path) -> None:
    result = cli("flush", AGENTTRACE_SPOOL_DIR=str(tmp_path / "spool"))
    assert result.returncode == 0
    assert "nothing to flush" in result.stderr


def test_an_agent_with_the_backend_down_finishes_and_flush_delivers(
    server: str, tmp_path: Path, llm_server
) -> None:
    # Spooled against an unreachable URL, delivered with `flush --all` to the real one.
    dead = backend_env(f"http://127.0.0.1:{free_port()}", tmp_path)
    started = time.monotonic()
    result = run_python(
        AGENT,
        env={
            **dead,
            "URL": llm_server.url,
            "RUN_NAME": "offline",
            "AGENTTRACE_EXPORT_TIMEOUT": "2",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # interpreter start-up dominates; the export is bounded
    assert any((tmp_path / "spool").rglob("*.otlp.gz"))
    last_line = result.stderr.splitlines()[-1]
    assert "spans spooled to" in last_line and "agenttrace flush" in last_line

    no_key = cli("flush", AGENTTRACE_SPOOL_DIR=str(tmp_path / "spool"))
    assert no_key.returncode == 2 and "AGENTTRACE_API_KEY" in no_key.stderr

    flushed = cli("flush", "--all", **backend_env(server, tmp_path))
    assert flushed.returncode == 0, flushed.stderr
    assert "delivered 1 batches" in flushed.stderr
    assert not any((tmp_path / "spool").rglob("*.otlp.gz"))
    listing = requests.get(
        server + "/api/v1/traces", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    assert "offline" in [t["name"] for t in listing.json()["traces"]]


def test_generated_key_file_is_private(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("file modes")
    from agenttrace.server.serve import generated_key, key_file_for

    key, created = generated_key(tmp_path / "x.db")
    assert created and key.startswith("at_test_")
    assert stat.S_IMODE(key_file_for(tmp_path / "x.db").stat().st_mode) == 0o600
    assert generated_key(tmp_path / "x.db") == (key, False)


def test_serve_reports_an_unusable_database_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = cli("serve", "--db", str(tmp_path / "file" / "t.db"), "--api-key", KEY)
    assert result.returncode == 1
    assert "cannot open the database" in result.stderr
    assert "Traceback" not in result.stderr and KEY not in result.stderr
