"""A killed agent keeps every call it completed: each way a process ends, in a real subprocess.

Every ending runs the same agent twice, without and with AgentTrace, and the exit status must be
the same. Then one more AgentTrace process runs in the directory (that is when a killed run is
finalised) and the trace must hold every completed call, with the right status, with
``last-failure.json`` pointing at it; a cut recording replays under governance up to its end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import agenttrace_serve, clean_env, cli, run_python

AGENT = """
import os, resource, signal, sys, time, uuid, urllib.request
from contextlib import nullcontext

PLAIN = os.environ.get("AGENT_PLAIN")  # the same agent without AgentTrace
HOW = os.environ.get("HOW", "")
if not PLAIN:
    import agenttrace
if HOW == "own_handler_before":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))
if not PLAIN:
    agenttrace.init()
if HOW == "own_handler_after":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))
step = (lambda name: nullcontext()) if PLAIN else agenttrace.step
tool = (lambda fn: fn) if PLAIN else agenttrace.tool
URL = os.environ["URL"]


@tool
def lookup(i):
    return {"order": i}

CALLS = int(os.environ.get("CALLS", "10"))


def end():
    if HOW == "raise":
        raise RuntimeError("the agent failed")
    if HOW == "sys_exit":
        sys.exit(3)
    if HOW == "os_exit":
        os._exit(3)
    if HOW in ("sigterm", "own_handler_before", "own_handler_after"):
        os.kill(os.getpid(), signal.SIGTERM)
    if HOW == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    if HOW == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if HOW == "memory":
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/status") as fh:
            size = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, hard))
        hog = bytearray(2**40)  # one allocation far past the limit: MemoryError
    time.sleep(10)  # a signal lands before this ends


for i in range(1, 100):
    with step(f"call {i}"):
        lookup(i)
        uuid.uuid4()
        urllib.request.urlopen(f"{URL}/weather?city=c{i}").read()
    if i == CALLS and HOW:
        with step("finish"):
            end()
print("done", flush=True)
"""

# ending -> (exit status, run status, what the run block says of the exit)
ENDINGS: dict[str, tuple[int, str, dict[str, Any]]] = {
    "raise": (1, "error", {}),
    "sys_exit": (3, "error", {}),
    "os_exit": (3, "terminated", {"exit_status": 3}),
    "sigterm": (-signal.SIGTERM, "terminated", {"signal": "SIGTERM"}),
    "own_handler_before": (5, "error", {}),
    "own_handler_after": (5, "error", {}),
    "sigint": (-signal.SIGINT, "terminated", {"signal": "SIGINT"}),
    "sigkill": (-signal.SIGKILL, "killed", {}),
    "memory": (1, "error", {}),
}


def _agent(workdir: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    return run_python(AGENT, env={"URL": url, **env}, cwd=workdir)


def _next_process(workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """One more AgentTrace process in the directory: an agent that only starts up."""
    return run_python("import agenttrace\nagenttrace.init()\n", env=env, cwd=workdir)


def _load(workdir: Path, name: str) -> dict[str, Any]:
    return json.loads((workdir / ".agenttrace" / name).read_text(encoding="utf-8"))


def _http(document: dict[str, Any]) -> list[str]:
    return [
        e["request"]["url"].rsplit("=", 1)[1] for e in document["events"] if e["kind"] == "http"
    ]


@pytest.mark.parametrize("how", list(ENDINGS))
def test_each_ending_keeps_every_completed_call_and_the_exit_status(tmp_path, llm_server, how):
    status, run_status, exit_facts = ENDINGS[how]
    plain = _agent(tmp_path / "plain", llm_server.url, HOW=how, AGENT_PLAIN="1")
    assert plain.returncode == status, plain.stderr
    assert not (tmp_path / "plain" / ".agenttrace").exists()

    recorded = _agent(tmp_path, llm_server.url, HOW=how)
    assert recorded.returncode == plain.returncode, recorded.stderr
    after = _next_process(tmp_path)
    assert after.returncode == 0, after.stderr
    assert ("recovered run" in after.stderr) == (run_status == "killed"), after.stderr

    document = _load(tmp_path, "last-failure.json")
    assert _http(document) == [f"c{i}" for i in range(1, 11)]  # every completed call
    tools = [e["result"]["order"] for e in document["events"] if e["kind"] == "tool"]
    assert tools == list(range(1, 11))
    run = document["run"]
    assert run["name"] == "script" and run["status"] == run_status
    assert {k: run[k] for k in exit_facts} == exit_facts
    spans = {s["name"]: s for s in document["spans"]}
    assert spans["finish"]["status"] == ("unset" if run_status == "killed" else "error")
    assert (tmp_path / ".agenttrace" / "traces" / f"{document['trace_id']}.json").exists()
    assert list((tmp_path / ".agenttrace" / "journal").glob("*.jsonl")) == []


@pytest.mark.parametrize(
    ("how", "cut"),
    [
        ("sigkill", "killed"),
        ("sigterm", "terminated by SIGTERM"),
        ("os_exit", "terminated by os._exit(3)"),
    ],
)
def test_a_cut_recording_replays_under_governance_to_where_it_ends(tmp_path, llm_server, how, cut):
    assert _agent(tmp_path, llm_server.url, HOW=how).returncode == ENDINGS[how][0]
    _next_process(tmp_path)
    recording = _load(tmp_path, "last-failure.json")
    last = max(e["seq"] for e in recording["events"] if e["kind"] != "clock")
    served = llm_server.request_count

    replayed = _agent(
        tmp_path,
        llm_server.url,
        AGENTTRACE_MODE="replay",
        AGENTTRACE_GOVERNANCE_LEVEL="governance",
        AGENTTRACE_REPLAY_EVENTS_FILE=".agenttrace/last-failure.json",
    )
    assert replayed.returncode != 0
    report = replayed.stderr.split("replay under governance FAILED", 1)[1]
    assert (
        f"the recording ends here (the recorded process was {cut} after event {last}): a call "
        "of tool 'lookup' in step 'call 11' comes after the last recorded event"
    ) in report
    assert report.count("ReplayDivergence") == 1  # one clear end, no generic divergence
    assert llm_server.request_count == served  # the ten calls were served, nothing went out
    (replay,) = (tmp_path / ".agenttrace" / "replays" / "traces").glob("*.json")
    assert _http(json.loads(replay.read_text())) == [f"c{i}" for i in range(1, 11)]


def test_a_forked_child_does_not_end_or_steal_the_parents_run(tmp_path, llm_server):
    forking = AGENT.replace(
        'print("done", flush=True)',
        "",
    ).replace(
        "for i in range(1, 100):",
        """for i in range(1, 100):
    if i == 3:
        pid = os.fork()
        if pid == 0:  # the child makes one call of its own and leaves as multiprocessing does
            urllib.request.urlopen(f"{URL}/weather?city=child").read()
            os._exit(0)
        os.waitpid(pid, 0)""",
    )
    result = run_python(forking, env={"URL": llm_server.url, "HOW": "sigkill"}, cwd=tmp_path)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "recovered run" in _next_process(tmp_path).stderr
    document = _load(tmp_path, "last-failure.json")
    assert document["run"]["status"] == "killed"
    assert _http(document) == [f"c{i}" for i in range(1, 11)]


def test_twenty_processes_starting_at_once_finalise_each_journal_once(tmp_path, llm_server):
    journals = tmp_path / ".agenttrace" / "journal"
    journals.mkdir(parents=True)
    for n in range(3):  # each killed in a directory of its own, or the next would finalise it
        killed = _agent(tmp_path / f"agent{n}", llm_server.url, HOW="sigkill", CALLS=str(n + 2))
        assert killed.returncode == -signal.SIGKILL
        for path in (tmp_path / f"agent{n}" / ".agenttrace" / "journal").glob("*.jsonl"):
            os.replace(path, journals / path.name)
    assert len(list(journals.glob("*.jsonl"))) == 3
    starters = [
        [sys.executable, "-c", "import agenttrace; agenttrace.init()"]
        if n % 2
        else [sys.executable, "-m", "agenttrace.cli", "flush"]
        for n in range(20)
    ]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, env=clean_env(), stderr=subprocess.PIPE, text=True)
        for command in starters
    ]
    said = "".join(p.communicate(timeout=120)[1] for p in procs)
    assert [p.returncode for p in procs] == [0] * 20, said
    assert said.count("recovered run") == 3, said
    killed = [
        json.loads(path.read_text())
        for path in (tmp_path / ".agenttrace" / "traces").glob("*.json")
    ]
    killed = [d for d in killed if d["run"]["status"] == "killed"]
    assert sorted(len(_http(d)) for d in killed) == [2, 3, 4]
    assert list((tmp_path / ".agenttrace" / "journal").glob("*.jsonl")) == []


def test_a_killed_run_reaches_the_backend_complete_and_once(tmp_path, llm_server):
    key = "at_test_crashproof_0123456789"
    flushing = AGENT.replace(
        "    if i == CALLS and HOW:",
        """    if i == 5:  # the first spans reach the backend while the agent lives
        from opentelemetry import trace
        trace.get_tracer_provider().force_flush()
    if i == CALLS and HOW:""",
    )
    with agenttrace_serve(tmp_path, "--api-key", key) as server:
        env = {
            "AGENTTRACE_API_KEY": key,
            "AGENTTRACE_API_URL": server.url,
            "AGENTTRACE_SPOOL_DIR": str(tmp_path / "spool"),
        }
        killed = run_python(
            flushing, env={**env, "URL": llm_server.url, "HOW": "sigkill"}, cwd=tmp_path
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        headers = {"Authorization": f"Bearer {key}"}
        before = requests.get(server.url + "/api/v1/traces", headers=headers).json()["traces"]
        assert [t["status"] for t in before] == ["unset"]  # a nameless partial trace so far

        pulled = run_python(
            "import sys\nfrom agenttrace.cli import main\nsys.exit(main(sys.argv[1:]))\n",
            env=env,
            cwd=tmp_path,
            args=["pull", "--last-failure", "-o", "pulled.json"],
        )
        assert pulled.returncode == 0, pulled.stderr
        assert "spans delivered to the backend" in pulled.stderr
        listed = requests.get(server.url + "/api/v1/traces", headers=headers).json()["traces"]

    document = json.loads((tmp_path / "pulled.json").read_text())
    assert document["run"]["status"] == "killed" and document["run"]["name"] == "script"
    assert _http(document) == [f"c{i}" for i in range(1, 11)]
    local = _load(tmp_path, "last-failure.json")
    assert document["events"] == local["events"]
    ids = [s["span_id"] for s in document["spans"]]
    assert sorted(ids) == sorted(s["span_id"] for s in local["spans"])
    assert len(ids) == len(set(ids)) == 1 + 11 + 10 + 10  # root, 11 steps, 10 tools, 10 calls
    assert len(listed) == 1
    assert listed[0]["status"] == "killed" and listed[0]["name"] == "script"
    assert listed[0]["span_count"] == len(ids)  # nothing stored twice
    assert listed[0]["event_count"] == len(document["events"])
    assert not any((tmp_path / "spool").rglob("*.otlp.gz"))


def test_a_cli_command_finalises_before_it_runs(tmp_path, llm_server):
    assert _agent(tmp_path, llm_server.url, HOW="sigkill").returncode == -signal.SIGKILL
    flushed = subprocess.run(
        [sys.executable, "-m", "agenttrace.cli", "flush"],
        cwd=tmp_path,
        env=clean_env({"AGENTTRACE_SPOOL_DIR": str(tmp_path / "spool")}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flushed.returncode == 0, flushed.stderr
    assert "recovered run 'script' (killed" in flushed.stderr
    assert _load(tmp_path, "last-failure.json")["run"]["status"] == "killed"
    assert _load(tmp_path, "last.json")["run"]["status"] == "killed"


def test_agenttrace_run_finalises_the_command_it_saw_killed(tmp_path, llm_server):
    script = tmp_path / "agent.py"
    script.write_text(AGENT.replace("    agenttrace.init()\n", "    pass\n"), encoding="utf-8")
    ran = cli(
        "run", "--", sys.executable, str(script), cwd=tmp_path, URL=llm_server.url, HOW="sigkill"
    )
    assert ran.returncode == 128 + signal.SIGKILL, ran.stderr  # as a shell reports it
    assert "recovered run 'agent' (killed" in ran.stderr
    assert "no run was recorded" not in ran.stderr
    assert _http(_load(tmp_path, "last-failure.json")) == [f"c{i}" for i in range(1, 11)]


def test_a_run_finalised_late_does_not_take_last_json_from_a_newer_run(tmp_path, llm_server):
    assert _agent(tmp_path, llm_server.url, HOW="sigkill").returncode == -signal.SIGKILL
    (journal,) = (tmp_path / ".agenttrace" / "journal").glob("*.jsonl")
    parked = tmp_path / "parked.jsonl"
    os.replace(journal, parked)  # as if finalising had not happened yet
    assert _agent(tmp_path, llm_server.url, HOW="raise").returncode == 1  # a newer failure
    newer = _load(tmp_path, "last-failure.json")["trace_id"]
    os.replace(parked, journal)
    assert "recovered run" in _next_process(tmp_path).stderr
    assert _load(tmp_path, "last-failure.json")["trace_id"] == newer
    killed = json.loads(
        (tmp_path / ".agenttrace" / "traces" / journal.with_suffix(".json").name).read_text()
    )
    assert killed["run"]["status"] == "killed"
