"""The run journal in-process: what it holds, what a journal rebuilds, how it is read back.

The endings of a real process (signals, ``os._exit``, SIGKILL) are in ``test_crash.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from agenttrace.exporters import journal, recovery
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import agenttrace
from agenttrace import _config, _session, _trace
from agenttrace._redaction import Redactor
from agenttrace._runs import Runs


@pytest.fixture(autouse=True)
def no_session_left() -> Iterator[None]:
    agenttrace.shutdown()
    yield
    agenttrace.shutdown()


def _start(tmp_path: Path, owns_exit: bool = False, **settings: Any) -> _session.Session:
    resolved = _config.resolve({"local_dir": str(tmp_path / ".agenttrace"), **settings})
    return _session.Session(resolved, owns_exit=owns_exit).start()


def _journals(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / ".agenttrace" / "journal").glob("*.jsonl"))


def _copy_journal(tmp_path: Path) -> Path:
    (live,) = _journals(tmp_path)
    copy = tmp_path / "copy.jsonl"
    shutil.copy(live, copy)
    return copy


@agenttrace.tool
def lookup(order: str) -> dict[str, Any]:
    return {"order": order, "items": [1, 2], "at": time.time()}


def test_a_journal_rebuilds_what_the_normal_path_writes(tmp_path, llm_server):
    session = _start(tmp_path)
    with agenttrace.run("checkout"):
        with agenttrace.step("plan", type="thought", input={"goal": "weather"}):
            stamp = time.time()  # a wall-clock read, journaled with the next line
            token = str(uuid.uuid4())
            requests.get(llm_server.url + "/weather?city=Oslo").json()
        with agenttrace.step("act", type="tool_call"):
            httpx.post(llm_server.url + "/echo", json={"token": token, "at": stamp}).json()
            with httpx.stream("GET", llm_server.url + "/sse") as response:
                chunks = list(response.iter_text())
            agenttrace.set_result({"chunks": len(chunks), "order": lookup("A-1")})
        copy = _copy_journal(tmp_path)  # what a SIGKILL here would leave
    session.stop()
    written = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    rebuilt = journal.read(str(copy)).document()

    assert rebuilt["trace_id"] == written["trace_id"]
    assert rebuilt["events"] == written["events"]  # every event, the clock reads included
    assert [e["kind"] for e in rebuilt["events"]].count("http") == 3
    assert [e["kind"] for e in rebuilt["events"]].count("tool") == 1
    assert "clock" in [e["kind"] for e in rebuilt["events"]]
    root = written["spans"][0]["span_id"]
    assert [s for s in rebuilt["spans"] if s["span_id"] != root] == [
        s for s in written["spans"] if s["span_id"] != root
    ]
    assert rebuilt["run"]["name"] == "checkout" and rebuilt["run"]["status"] == "killed"
    assert written["run"]["status"] == "ok"
    assert {
        k: v for k, v in rebuilt["run"].items() if k not in ("status", "error", "ended_at")
    } == {k: v for k, v in written["run"].items() if k not in ("status", "error", "ended_at")}
    assert _journals(tmp_path) == []  # the run ended and its trace is written: journal gone


def test_the_journal_of_an_ended_run_rebuilds_the_very_document(tmp_path, llm_server):
    session = _start(tmp_path)
    session.journal._settled = lambda trace_id: False  # keep it, as an unacknowledged run's
    with agenttrace.run("checkout"), agenttrace.step("plan", input={"n": 1}):
        uuid.uuid4()
        requests.get(llm_server.url + "/weather?city=Oslo")
        time.time()
    try:
        with agenttrace.run("second"):
            requests.get(llm_server.url + "/status/500")
            raise ValueError("boom")
    except ValueError:
        pass
    session.stop()
    for path in _journals(tmp_path):
        rebuilt = journal.read(str(path)).document()
        written = json.loads(
            (tmp_path / ".agenttrace" / "traces" / f"{rebuilt['trace_id']}.json").read_text()
        )
        assert rebuilt == written
    assert len(_journals(tmp_path)) == 2


def test_a_run_killed_while_being_terminated_says_by_what(tmp_path, llm_server):
    session = _start(tmp_path)
    with agenttrace.run("agent"):
        requests.get(llm_server.url + "/weather?city=Oslo")
        session.journal.note_exit({"signal": "SIGTERM"})  # then the process died
        copy = _copy_journal(tmp_path)
    session.stop()
    run = journal.read(str(copy)).document()["run"]
    assert run["status"] == "killed" and run["signal"] == "SIGTERM"
    assert run["error"] == "killed: its process died without ending the run (by SIGTERM)"


def test_an_open_step_is_where_the_killed_run_was(tmp_path, llm_server):
    session = _start(tmp_path)
    with agenttrace.run("agent"), agenttrace.step("finish", input={"n": 1}):
        requests.get(llm_server.url + "/weather?city=Rome")
        with agenttrace.step("inner"):
            copy = _copy_journal(tmp_path)
    session.stop()
    spans = {s["name"]: s for s in journal.read(str(copy)).document()["spans"]}
    assert spans["finish"]["end"] is None and spans["inner"]["end"] is None
    assert spans["finish"]["attributes"][_trace.ATTR_STEP_INPUT] == '{"n": 1}'
    assert spans["inner"]["parent_id"] == spans["finish"]["span_id"]
    assert spans["GET"]["end"] is not None and spans["agent"]["status"] == "error"


def test_no_secret_reaches_the_journal(tmp_path, llm_server):
    secret = "sk-proj-" + "Zx9" * 12
    session = _start(tmp_path)
    with agenttrace.run("agent"):
        with agenttrace.step("call", input={"api_key": secret, "city": "Oslo"}):
            requests.get(
                llm_server.url + f"/weather?city=Oslo&api_key={secret}",
                headers={"Authorization": f"Bearer {secret}"},
            )
            httpx.post(llm_server.url + "/echo", json={"password": secret})
        raw = _copy_journal(tmp_path).read_bytes()
    session.stop()
    assert b"Oslo" in raw and b"/echo" in raw  # it did journal the calls
    assert secret.encode() not in raw


def test_the_journal_holds_no_memory_per_event(tmp_path):
    provider = TracerProvider()
    tracer = provider.get_tracer("agenttrace")
    runs = Runs(tracer, "agent", {"seed": 1}, str)
    sink = journal.Journal(str(tmp_path), Redactor.from_settings(_config.resolve({})))
    runs.watchers.append(sink.watch)
    runs.sinks.append(sink.event)
    run = runs.open("agent")
    in_run = trace.set_span_in_context(run.span)
    payload = _trace.dumps_compact({"seq": 1, "kind": "http", "request": {"body": "x" * 2000}})

    def one(i: int) -> None:
        span = tracer.start_span("GET", in_run, kind=SpanKind.CLIENT, attributes={"seq": i})
        span.set_attribute(_trace.ATTR_EVENT, payload)
        span.end()
        sink.on_end(span._readable_span())  # type: ignore[attr-defined]

    for i in range(200):  # warm up
        one(i)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(5000):
        one(i)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes held after 5000 journaled events"
    assert (tmp_path / "journal").exists()
    (path,) = journal.journals(str(tmp_path))
    assert len(Path(path).read_bytes().splitlines()) == 1 + 5200  # header + a line per event


def test_fsync_policy_is_a_setting_with_choices(tmp_path, llm_server):
    with pytest.raises(agenttrace.ConfigError, match="journal_fsync='sometimes'.*never, always"):
        _config.resolve({"journal_fsync": "sometimes"})
    os.environ["AGENTTRACE_JOURNAL_FSYNC"] = "always"
    try:
        session = _start(tmp_path)
    finally:
        del os.environ["AGENTTRACE_JOURNAL_FSYNC"]
    assert session.settings.journal_fsync == "always"
    with agenttrace.run("agent"):
        requests.get(llm_server.url + "/weather?city=Oslo")
        lines = _copy_journal(tmp_path).read_text().splitlines()
    session.stop()
    assert any('"agenttrace.seq"' in line for line in lines)


def test_exit_tracking_patches_and_handler_are_undone(tmp_path):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    original_exit = os._exit
    session = _start(tmp_path, owns_exit=True)
    assert os._exit is not original_exit
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    session.stop()
    assert os._exit is original_exit
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_agents_own_sigterm_handler_is_left_alone(tmp_path):
    def handler(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        session = _start(tmp_path, owns_exit=True)
        assert signal.getsignal(signal.SIGTERM) is handler
        session.stop()
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- reading bad journals -------------------------------------------------------------------------


def _killed_journal(tmp_path: Path, llm_server: Any, calls: int = 3) -> Path:
    """A journal as a killed process leaves it (copied while the run is open)."""
    session = _start(tmp_path / "recording")
    with agenttrace.run("agent"):
        for i in range(calls):
            with agenttrace.step(f"call {i}"):
                requests.get(llm_server.url + f"/weather?city=c{i}")
        copy = _copy_journal(tmp_path / "recording")
    session.stop()
    target = tmp_path / ".agenttrace" / "journal" / copy.with_suffix(".jsonl").name
    target.parent.mkdir(parents=True, exist_ok=True)
    name = json.loads(copy.read_text().splitlines()[0])["trace_id"] + ".jsonl"
    shutil.move(copy, target.with_name(name))
    return target.with_name(name)


def _finalise(tmp_path: Path) -> tuple[list[recovery.Finalised], list[str]]:
    said: list[str] = []
    done = recovery.finalise_orphans(str(tmp_path / ".agenttrace"), say=said.append)
    return done, said


def test_a_torn_last_line_is_finalised_up_to_the_entry_before_it(tmp_path, llm_server):
    path = _killed_journal(tmp_path, llm_server)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    last_http = max(i for i, line in enumerate(lines) if b'"agenttrace.seq"' in line)
    kept = b"".join(lines[:last_http]) + lines[last_http][:-40]  # died while writing call 3
    path.write_bytes(kept)
    done, said = _finalise(tmp_path)
    assert len(done) == 1 and done[0].status == "killed"
    offset = len(b"".join(lines[:last_http]))
    assert any(
        str(path) in line and f"line {last_http + 1} (byte {offset}) is incomplete" in line
        for line in said
    ), said
    document = json.loads(Path(done[0].trace).read_text())
    assert [
        e["request"]["url"].rsplit("=", 1)[1] for e in document["events"] if e["kind"] == "http"
    ] == ["c0", "c1"]
    assert not path.exists()


def test_a_corrupt_line_is_skipped_with_its_position_and_the_rest_kept(tmp_path, llm_server):
    path = _killed_journal(tmp_path, llm_server)
    lines = path.read_bytes().splitlines(keepends=True)
    first_http = min(i for i, line in enumerate(lines) if b'"agenttrace.seq"' in line)
    lines[first_http] = b"\x00garbage{{{\n"
    path.write_bytes(b"".join(lines))
    done, said = _finalise(tmp_path)
    offset = len(b"".join(lines[:first_http]))
    assert any(f"line {first_http + 1} (byte {offset}) is not a journal entry" in s for s in said)
    document = json.loads(Path(done[0].trace).read_text())
    assert [
        e["request"]["url"].rsplit("=", 1)[1] for e in document["events"] if e["kind"] == "http"
    ] == ["c1", "c2"]


def test_a_journal_without_a_header_is_set_aside_not_lost(tmp_path):
    directory = tmp_path / ".agenttrace" / "journal"
    directory.mkdir(parents=True)
    bad = directory / ("ab" * 16 + ".jsonl")
    bad.write_bytes(b"this is not json\n")
    empty = directory / ("cd" * 16 + ".jsonl")
    empty.write_bytes(b"")
    done, said = _finalise(tmp_path)
    assert done == []
    assert (directory / (bad.name + ".unreadable")).read_bytes() == b"this is not json\n"
    assert (directory / (empty.name + ".unreadable")).exists()
    assert any(str(bad) in s and "line 1 (byte 0)" in s for s in said), said
    assert _finalise(tmp_path) == ([], [])  # set aside: not looked at again


def test_a_live_journal_is_not_finalised(tmp_path, llm_server):
    session = _start(tmp_path)
    with agenttrace.run("agent"):
        requests.get(llm_server.url + "/weather?city=Oslo")
        assert _finalise(tmp_path) == ([], [])  # our own lock holds it
        assert len(_journals(tmp_path)) == 1
    session.stop()
