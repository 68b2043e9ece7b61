"""`agenttrace show`: a real recorded agent printed as a tree, plain when piped, JSON for machines,
from a file, an id, the local store or the backend; bad input is one line and exit status 2."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _recorded import AGENT, Recording, llm_events, record, replay
from conftest import agenttrace_serve, cli, run_python
from llm_server import LLMServer

from agenttrace import _console, _outline, _trace

PRICED = importlib.util.find_spec("genai_prices") is not None
ANSI = re.compile(r"\x1b\[[0-9;]*m")
KEY = "at_test_show_0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def recording(module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return record(tmp_path_factory.mktemp("show-ok"), module_llm_server.url)


@pytest.fixture(scope="module")
def failed(module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return record(tmp_path_factory.mktemp("show-failed"), module_llm_server.url, FAIL="1")


def _tokens(seen: dict[str, Any]) -> str:
    text = f"{seen['input']} in"
    extras = [f"{seen['cached']} cached"] if seen["cached"] else []
    if seen.get("cache_write"):
        extras.append(f"{seen['cache_write']} to cache")
    if extras:
        text += f" ({', '.join(extras)})"
    text += f" / {seen['output']} out"
    if seen.get("reasoning"):
        text += f" ({seen['reasoning']} reasoning)"
    return text


def test_show_prints_the_run_as_a_tree_with_every_field(recording: Recording) -> None:
    result = cli("show", cwd=recording.workdir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not ANSI.search(out), "piped output is plain text"
    lines = out.splitlines()
    document = recording.document
    assert lines[0].startswith(f"look_agent  ok  trace {document['trace_id']}")
    # Steps in order, each call under its step.
    steps = [
        line.split("─ ", 1)[1].split(" [")[0] for line in lines if " [" in line and "#" not in line
    ]
    assert steps == [
        "Plan",
        "Choose tools",
        "get_weather",
        "get_weather",
        "Answer",
        "Responses",
        "Claude",
        "Local model",
    ]
    assert re.search(r"├─ Choose tools \[llm\]  [\d.]+ ms\n│  ├─ +#1  entropy", out)
    http = [e for e in document["events"] if e["kind"] == "http"]
    for event in http:
        line = next(line for line in lines if re.search(rf"#{event['seq']}  http  ", line))
        request = event["request"]
        assert f"{request['method']} {request['url']}  {event['response']['status']}" in line
        assert re.search(r"  [\d.]+ ms", line)
        if "chunks" in event["response"]:
            assert f"  {len(event['response']['chunks'])} chunks" in line
        assert f"{len(event['redacted'])} redacted" in line
    for event, seen in zip(llm_events(document), recording.seen, strict=True):
        line = next(line for line in lines if f"#{event['seq']}  http" in line)
        assert f"chat {seen['model']}  tokens {_tokens(seen)}" in line
        assert ("$" in line) is (seen["model"] != "my-local-llm" and PRICED)
    # The password the step filtered is not there, its redaction is.
    assert "hunter2" not in out and "password=[REDACTED]" in out
    totals = _outline.outline(document).totals
    seen = recording.seen
    total_tokens = (
        f"tokens {sum(s['input'] for s in seen)} in ({sum(s['cached'] for s in seen)} cached"
    )
    totals_line = next(line for line in lines if line.startswith("calls "))
    assert totals_line.startswith("calls 9 (7 LLM)  " + total_tokens)
    if totals.pricing:
        assert f"cost {_console.usd(totals.cost_usd)} (priced calls only)" in totals_line
    else:  # Python 3.10: genai-prices needs 3.11
        assert "cost unknown (no price table: pip install 'agenttrace[cost]')" in totals_line
    assert "9 redactions" in totals_line and "  wall " in totals_line
    assert ("no price for my-local-llm: 1 in / 4 out tokens" in out) is PRICED
    assert "error:" not in out


def test_show_json_is_the_whole_outline(recording: Recording) -> None:
    result = cli("show", "--json", cwd=recording.workdir)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"] == "agenttrace.show/1"
    assert data["trace_id"] == recording.document["trace_id"]
    assert data["run"]["name"] == "look_agent" and data["run"]["status"] == "ok"
    assert data["run"]["wall_ms"] > 0
    assert data["totals"]["calls"] == 9 and data["totals"]["llm_calls"] == 7
    unpriced = ["my-local-llm"] if PRICED else ["claude-sonnet-4-5", "gpt-4o-mini", "my-local-llm"]
    assert data["totals"]["unpriced_models"] == unpriced

    def events(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for child in node["children"]:
            yield from events(child) if child["type"] == "step" else [child]

    listed = list(events(data["tree"]))
    assert sorted(e["seq"] for e in listed) == [e["seq"] for e in recording.document["events"]]
    answer = next(c for c in data["tree"]["children"] if c.get("name") == "Answer")
    streamed = next(e for e in answer["children"] if e["kind"] == "http")
    seen = recording.seen[1]
    assert streamed["usage"] == {
        "input_tokens": seen["input"],
        "output_tokens": seen["output"],
        "cache_read_tokens": seen["cached"],
        "reasoning_tokens": seen["reasoning"],
    }
    assert streamed["chunks"] >= 1 and streamed["llm"] == "chat gpt-4o-mini"


def test_show_a_failed_run_names_its_error(failed: Recording) -> None:
    for args in (["show", "--last-failure"], ["show"], ["show", str(failed.path)]):
        result = cli(*args, cwd=failed.workdir)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("look_agent  error  trace ")
        assert result.stdout.splitlines()[-1] == "error: RuntimeError: the agent gave up" or (
            "error: RuntimeError: the agent gave up" in result.stdout
        )


def test_show_finds_a_trace_by_id_prefix_or_file_and_the_last_replay(
    recording: Recording, module_llm_server: LLMServer
) -> None:
    trace_id = recording.document["trace_id"]
    for ref in (trace_id, trace_id[:8].upper(), str(recording.path), "last"):
        result = cli("show", ref, cwd=recording.workdir)
        assert result.returncode == 0, (ref, result.stderr)
        assert f"trace {trace_id}" in result.stdout.splitlines()[0]
    replayed = replay(recording, module_llm_server.url)
    assert replayed.returncode == 0, replayed.stderr
    result = cli("show", "--last-replay", cwd=recording.workdir)
    assert result.returncode == 0, result.stderr
    assert "(replay)" in result.stdout.splitlines()[0]
    assert f"trace {trace_id}" not in result.stdout
    replay_id = result.stdout.split("trace ", 1)[1].split()[0]
    assert cli("show", replay_id, cwd=recording.workdir).returncode == 0


def test_colours_on_a_terminal_only(recording: Recording) -> None:
    forced = cli("show", cwd=recording.workdir, FORCE_COLOR="1", COLUMNS="300")
    assert "\x1b[32mok\x1b[0m" in forced.stdout  # the run status, in green
    colourless = cli("show", cwd=recording.workdir, FORCE_COLOR="1", NO_COLOR="1")
    assert not re.search(r"\x1b\[(?:[0-9;]*;)?3[0-7]m", colourless.stdout)
    assert (
        ANSI.sub("", forced.stdout).splitlines()[0]
        == cli("show", cwd=recording.workdir).stdout.splitlines()[0]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1 column 2"),
        ('{"hello": "world"}', "format None is not supported; expected 'agenttrace.trace/1'"),
        (
            '{"format": "agenttrace.trace/2", "events": []}',
            "format 'agenttrace.trace/2' is not supported; expected 'agenttrace.trace/1' "
            "(it was written by another agenttrace version",
        ),
        ('{"format": "agenttrace.trace/1", "events": [{"seq": 1}]}', "is missing kind"),
        ("", "the file is empty"),
    ],
)
def test_bad_trace_files_are_one_line_and_exit_2(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "trace.json"
    path.write_text(content, encoding="utf-8")
    for command in (["show", str(path)], ["diff", str(path), str(path)]):
        result = cli(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr and str(path) in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_traces_say_what_to_do(tmp_path: Path) -> None:
    cases = [
        (["show"], "no run yet: .agenttrace/last.json does not exist"),
        (["show", "--last-failure"], "no failed run yet"),
        (["show", "--last-replay"], "no replayed run yet"),
        (
            ["show", "0123abcd" * 4],
            "no trace 0123abcd0123abcd0123abcd0123abcd in .agenttrace/traces",
        ),
        (["show", "nope.json"], "nope.json: no such events file; record a run first"),
        (["show", "not-a-trace"], "not-a-trace: no such file, and not a trace id"),
        (["show", str(tmp_path)], "cannot be read"),
    ]
    for args, message in cases:
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_show_and_diff_help() -> None:
    for command in ("show", "diff"):
        result = cli(command, "--help", cwd=Path.cwd())
        assert result.returncode == 0 and f"usage: agenttrace {command}" in result.stdout


# -- what other engineers' events look like, and big runs ------------------------------------------


def _with_events(document: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    top = max(e["seq"] for e in changed["events"])
    for offset, event in enumerate(extra, 1):
        changed["events"].append({"step": "Plan", **event, "seq": top + offset})
    return changed


def test_tool_websocket_mcp_clock_and_unknown_events_render(
    recording: Recording, tmp_path: Path
) -> None:
    extra = [
        {
            "kind": "tool",
            "name": "db.query",
            "args": ["select 1"],
            "result": [1],
            "duration_ms": 2.5,
            "redacted": [],
        },
        {
            "kind": "tool",
            "name": "charge_card",
            "args": [],
            "error": {"type": "PaymentError", "message": "declined"},
            "duration_ms": 1.0,
            "redacted": ["args[0]"],
        },
        {
            "kind": "websocket",
            "request": {"url": "wss://realtime.example/v1", "headers": []},
            "frames": [
                {"at_ms": 1, "dir": "send", "text": "hi"},
                {"at_ms": 2, "dir": "recv", "text": "yo"},
                {"at_ms": 3, "dir": "recv", "base64": "AA=="},
            ],
            "close": {"code": 1000},
            "duration_ms": 9.0,
        },
        {
            "kind": "mcp",
            "transport": "stdio",
            "server": "weather-mcp",
            "messages": [
                {
                    "at_ms": 1,
                    "dir": "send",
                    "json": {"jsonrpc": "2.0", "id": 1, "method": "initialize"},
                },
                {"at_ms": 2, "dir": "recv", "json": {"jsonrpc": "2.0", "id": 1, "result": {}}},
                {
                    "at_ms": 3,
                    "dir": "send",
                    "json": {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "tools/call",
                        "params": {"name": "forecast"},
                    },
                },
                {
                    "at_ms": 4,
                    "dir": "recv",
                    "json": {"jsonrpc": "2.0", "id": 2, "error": {"code": -1}},
                },
            ],
            "duration_ms": 4.0,
        },
        {"kind": "clock", "source": "time.time", "value": 1.5},
        {
            "kind": "quantum",
            "span_id": "ffffffffffffffff",
            "name": "entangle",
            "weird": {"nested": [1]},
        },
        {"kind": "dns", "host": "example.com", "port": 443, "result": [["1.2.3.4", 443]]},
        {
            "kind": "http",
            "request": {
                "method": "POST",
                "url": "https://api.openai.com/v1/chat/completions",
                "headers": [],
                "body": {"json": {"model": "gpt-4o", "messages": []}},
            },
            "response": {
                "status": 429,
                "headers": [],
                "body": {"json": {"error": {"message": "slow down"}}},
            },
            "duration_ms": 3.0,
            "redacted": [],
        },
        {
            "kind": "http",
            "request": {"method": "GET", "url": "http://down.example/x", "headers": []},
            "error": {"type": "ConnectError", "module": "httpx", "message": "connection refused"},
            "duration_ms": 1.0,
            "redacted": [],
        },
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(_with_events(recording.document, extra)), encoding="utf-8")
    result = cli("show", "--all", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    top = max(e["seq"] for e in recording.document["events"])
    assert re.search(rf"#{top + 1}  tool  db\.query  ok  2\.5 ms", out)
    assert re.search(
        rf"#{top + 2}  tool  charge_card  PaymentError  1\.0 ms  1 redacted  declined",
        out,
    )
    assert re.search(
        rf"#{top + 3}  websocket  wss://realtime\.example/v1  closed 1000  9\.0 ms  3 frames \(1 sent, 2 received\)",
        out,
    )
    assert re.search(
        rf"#{top + 4}  mcp  weather-mcp: initialize, tools/call forecast  error  4\.0 ms  4 messages",
        out,
    )
    assert re.search(rf"#{top + 5}  clock  time\.time\n", out)
    assert re.search(rf"#{top + 6}  quantum  entangle  ok", out)
    assert re.search(rf"#{top + 7}  dns  example\.com:443  1 addresses", out)
    assert re.search(
        rf"#{top + 8}  http  POST https://api\.openai\.com/v1/chat/completions  429  3\.0 ms  chat gpt-4o  slow down\n",
        out,
    )
    assert re.search(
        rf"#{top + 9}  http  GET http://down\.example/x  ConnectError  1\.0 ms  connection refused",
        out,
    )
    # 11 HTTP, 2 tools, a websocket, an MCP session, and the unknown kind (it has a span)
    assert "calls 16 (8 LLM)" in out
    as_json = cli("show", "--json", str(path), cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["totals"]["calls"] == 16


def _big(document: dict[str, Any], size: int) -> dict[str, Any]:
    events = []
    while len(events) < size:
        for event in document["events"]:
            events.append({**event, "seq": len(events) + 1})
    return {**document, "events": events[:size]}


def test_long_runs_of_facts_and_repeated_calls_fold(recording: Recording, tmp_path: Path) -> None:
    weather = next(
        e for e in recording.document["events"] if "/weather" in e.get("request", {}).get("url", "")
    )
    entropy = next(e for e in recording.document["events"] if e["kind"] == "entropy")
    polling = [{**weather, "step": "Plan", "span_id": None} for _ in range(30)]
    facts = [{**entropy, "step": "Plan"} for _ in range(50)]
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(_with_events(recording.document, facts + polling)), encoding="utf-8")
    folded = cli("show", str(path), cwd=tmp_path)
    assert folded.returncode == 0, folded.stderr
    top = max(e["seq"] for e in recording.document["events"])
    assert re.search(rf"#{top + 1}–#{top + 50}  entropy ×50\n", folded.stdout)
    assert re.search(
        rf"#{top + 53}–#{top + 79}  … 27 more http  GET http://127\.0\.0\.1:\d+/weather  200  [\d.]+ ms in all",
        folded.stdout,
    )
    assert f"#{top + 52}  http" in folded.stdout and f"#{top + 80}  http" in folded.stdout
    assert f"#{top + 60}  http" not in folded.stdout
    assert "(77 events folded; --all shows every one)" in folded.stdout
    everything = cli("show", "--all", str(path), cwd=tmp_path)
    assert f"#{top + 60}  http" in everything.stdout and "folded" not in everything.stdout
    assert len(everything.stdout.splitlines()) > len(folded.stdout.splitlines()) + 70


def test_a_20k_event_trace_shows_quickly(recording: Recording, tmp_path: Path) -> None:
    big = _big(recording.document, 20_000)
    checked, _ = _trace.load_document(big)
    started = time.perf_counter()
    view = _outline.outline(checked)
    buffer = io.StringIO()
    _console.print_outline(view, _console.make_console(buffer))
    elapsed = time.perf_counter() - started
    assert view.totals.calls == sum(1 for e in big["events"] if e["kind"] == "http")
    assert len(buffer.getvalue().splitlines()) < 8_000  # entropy folded
    assert elapsed < 20, f"show of 20k events took {elapsed:.1f} s"
    print(f"show of 20k events: {elapsed:.2f} s")


# -- from the backend -----------------------------------------------------------------------------


def test_show_reads_runs_from_the_backend(module_llm_server: LLMServer, tmp_path: Path) -> None:
    with agenttrace_serve(tmp_path, "--api-key", KEY, db_name="t.db") as backend:
        env = {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": backend.url}
        sent = record_to_backend(tmp_path / "agent", module_llm_server.url, env)
        assert not (tmp_path / "agent" / ".agenttrace" / "last.json").exists()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        latest = cli("show", cwd=elsewhere, **env)
        assert latest.returncode == 0, latest.stderr
        trace_id = latest.stdout.split("trace ", 1)[1].split()[0]
        assert "calls 9 (7 LLM)" in latest.stdout and sent in latest.stdout
        by_id = cli("show", trace_id, cwd=elsewhere, **env)
        assert by_id.returncode == 0 and by_id.stdout == latest.stdout
        missing = cli("show", "f" * 32, cwd=elsewhere, **env)
        assert missing.returncode == 2 and "not found" in missing.stderr
        assert KEY not in missing.stderr


def record_to_backend(workdir: Path, url: str, env: dict[str, str]) -> str:
    """Record the agent with an API key (so to the backend); returns its answer text."""
    workdir.mkdir()
    result = run_python(
        AGENT, env={"URL": url, "AGENTTRACE_SPOOL_DIR": str(workdir / "spool"), **env}, cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])["seen"][0]["model"]


def test_a_killed_run_with_steps_that_never_ended(recording: Recording) -> None:
    document = copy.deepcopy(recording.document)
    document["run"].update(status="killed", ended_at=None)
    answer = next(s for s in document["spans"] if s["name"] == "Answer")
    document["spans"] = [  # what a process that died inside "Answer" leaves: no span for it
        s
        for s in document["spans"]
        if s["span_id"] != answer["span_id"] and s["parent_id"] != answer["span_id"]
    ]
    view = _outline.outline(_trace.load_document(document)[0])
    made_up = [
        c for c in view.root.children if isinstance(c, _outline.StepNode) and c.name == "Answer"
    ]
    assert len(made_up) == 1 and made_up[0].ended is False
    kinds = [c.kind for c in made_up[0].children]
    assert kinds == ["entropy", "http"]  # both of its events, found by their step name
    buffer = io.StringIO()
    _console.print_outline(view, _console.make_console(buffer))
    out = buffer.getvalue()
    assert "Answer  (never ended)" in out and "  wall ?" in out
    assert out.splitlines()[0].startswith("look_agent  killed  trace ")
    assert "error: the run ended killed" in out
