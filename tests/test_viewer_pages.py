"""The viewer's pages on bad input, in process (the real Starlette app over real files, no browser):
every event kind and malformed events render, huge and binary bodies are cut with a download of
the whole, corrupt files are skipped with a note, paging and filters, a 20k-event run, session
tokens, and the templates shipping in a wheel."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _viewer_agent import Run, record
from conftest import REPO_ROOT, run_python
from llm_server import LLMServer
from starlette.testclient import TestClient

from agenttrace import _body, _trace
from agenttrace._outline import outline
from agenttrace.server.viewer import access, detail, sources, waterfall
from agenttrace.server.viewer.local import local_app

HUGE = 300_000  # characters: far past detail.MAX_INLINE
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def recorded(module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = record(tmp_path_factory.mktemp("viewer-pages"), module_llm_server.url)
    last = run.workdir / ".agenttrace" / "last.json"
    run.trace_id = json.loads(last.read_text(encoding="utf-8"))["trace_id"]
    return run


def _document(run: Run) -> dict[str, Any]:
    path = run.workdir / ".agenttrace" / "traces" / f"{run.trace_id}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _client(path: Path) -> TestClient:
    return TestClient(local_app(path), base_url="http://127.0.0.1", raise_server_exceptions=True)


def _with_events(document: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(document)
    top = max(e["seq"] for e in out["events"])
    for offset, event in enumerate(extra, 1):
        out["events"].append({**event, "seq": top + offset})
    return out


def _http(url: str, response: Any, **more: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "request": {"method": "POST", "url": url, "headers": [["content-type", "x"]], "body": None},
        "response": response,
        "duration_ms": 1.0,
        "redacted": [],
        **more,
    }


EXTRA: list[dict[str, Any]] = [
    {"kind": "tool", "name": "db.query", "args": ["select 1"], "result": [{"n": 1}]},
    {
        "kind": "tool",
        "name": "charge_card",
        "args": [],
        "error": {"type": "PaymentError", "message": "declined <b>hard</b>"},
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
            {"at_ms": 3, "dir": "send", "json": {"method": "tools/call", "params": {"name": "f"}}},
        ],
    },
    {
        "kind": "websocket",
        "request": {
            "url": "wss://realtime.example/v1",
            "headers": [["authorization", "[REDACTED]"]],
        },
        "frames": [
            {"at_ms": 1, "dir": "send", "text": '{"type": "hello"}'},
            {"at_ms": 2, "dir": "recv", "base64": base64.b64encode(b"\x00\x01binary").decode()},
        ],
        "close": {"code": 1000, "reason": "bye"},
        "redacted": ["request.headers.authorization"],
    },
    {"kind": "quantum", "span_id": "ffffffffffffffff", "name": "entangle", "qubits": [1, 2]},
    {"kind": "dns", "host": "example.com", "port": 443, "result": [["1.2.3.4", 443]]},
    _http(
        "http://img.example/logo.png",
        {
            "status": 200,
            "headers": [["content-type", "image/png"]],
            "body": {"base64": base64.b64encode(PNG).decode()},
        },
    ),
    _http(
        "http://big.example/dump",
        {"status": 200, "headers": [], "body": {"json": {"rows": ["x" * 100] * (HUGE // 100)}}},
    ),
    # Missing and malformed fields: no status, headers that are not pairs, a body of no known
    # layout, base64 that does not decode, a stream of junk, redactions that are not a list.
    _http("http://odd.example/a", {"headers": [["only-one"]], "body": {"weird": 1}}),
    _http("http://odd.example/b", {"status": 200, "body": {"base64": "!!not base64!!"}}),
    _http("http://odd.example/c", {"status": 200, "chunks": [{"text": "no sse"}, "junk", 7]}),
    _http("http://odd.example/d", "not a response", redacted="everything"),
    {"kind": "websocket"},
    {"kind": "mcp", "messages": "not a list"},
    {"kind": "tool"},
    {"kind": "http", "request": {"method": "GET", "url": "http://down.example/"}, "error": "boom"},
]


# A real agent making each kind of call the capture layer records besides HTTP: two
# `agenttrace.tool` calls (one raising), a websocket session (text and binary frames) against a
# websockets server of its own, and an MCP stdio session with the mcp package's server.
KINDS_AGENT = r"""
import asyncio, json, os, sys, threading
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from websockets.asyncio.server import serve
from websockets.sync.client import connect
import agenttrace

agenttrace.init()


@agenttrace.tool
def lookup_order(order_id: str) -> dict:
    return {"order": order_id, "status": "shipped"}


@agenttrace.tool(name="charge_card")
def charge(amount: int) -> None:
    raise ValueError(f"declined: {amount}")


def echo_server(ready, port):
    async def handler(ws):
        async for message in ws:
            reply = message[::-1] if isinstance(message, bytes) else json.dumps({"echo": message})
            await ws.send(reply)

    async def main():
        async with serve(handler, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.Future()

    asyncio.run(main())


async def weather_over_mcp():
    params = StdioServerParameters(command=sys.executable, args=[os.environ["MCP_SERVER"]])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("get_weather", {"city": "Paris"})
            return [c.text for c in result.content]


@agenttrace.run(name="kinds_agent")
def main():
    with agenttrace.step("Tools", type="tool_call"):
        print(lookup_order("A-1"))
        try:
            charge(42)
        except ValueError as exc:
            print("refused", exc)
    ready, port = threading.Event(), []
    threading.Thread(target=echo_server, args=(ready, port), daemon=True).start()
    ready.wait(10)
    with agenttrace.step("Realtime", type="llm"):
        with connect(f"ws://127.0.0.1:{port[0]}/v1/realtime") as ws:
            ws.send("hello")
            print(ws.recv())
            ws.send(b"\x00\x01\x02")
            print(ws.recv())
    with agenttrace.step("MCP", type="tool_call"):
        print(asyncio.run(weather_over_mcp()))


main()
"""

MCP_SERVER = '''
try:
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server
mcp = Server("weather")

@mcp.tool()
def get_weather(city: str) -> dict:
    """The weather in a city."""
    return {"city": city, "temp_c": len(city) * 3}

mcp.run()
'''


def test_real_tool_mcp_and_websocket_events_render_from_their_fields(tmp_path: Path) -> None:
    server = tmp_path / "mcp_server.py"
    server.write_text(MCP_SERVER, encoding="utf-8")
    result = run_python(KINDS_AGENT, env={"MCP_SERVER": str(server)}, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    store = tmp_path / ".agenttrace"
    document = json.loads((store / "last.json").read_text(encoding="utf-8"))
    kinds = {e["seq"]: e["kind"] for e in document["events"]}
    client = _client(store)
    page = client.get(f"/runs/{document['trace_id']}")
    assert page.status_code == 200
    for label in ("lookup_order", "charge_card", "/v1/realtime", "tools/call get_weather"):
        assert label in page.text, label
    assert str(server) in page.text  # the MCP server named by its command line, not a dict
    panes = {
        seq: client.get(f"/runs/{document['trace_id']}/events/{seq}").text
        for seq, kind in kinds.items()
        if kind in ("tool", "websocket", "mcp")
    }
    lookup, charge, socket, session = panes.values()
    assert "Tool call" in lookup and "A-1" in lookup and "shipped" in lookup
    assert "ValueError: declined: 42" in charge and "Result" not in charge
    assert "WebSocket" in socket and "handshake</dt><dd>101" in socket
    assert "1000, by the client" in socket and "4 frames, in order" in socket
    assert "→ sent" in socket and "← received" in socket and "00000000  00 01 02" in socket
    assert "MCP session" in session and "stdio" in session and str(server) in session
    assert "initialize" in session and "get_weather" in session and "Paris" in session


def test_every_kind_and_malformed_events_render_never_a_500(recorded: Run, tmp_path: Path) -> None:
    document = _with_events(_document(recorded), EXTRA)
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    client = _client(path)
    page = client.get("/runs/mixed")
    assert page.status_code == 200, page.text
    assert "quantum" in page.text and "entangle" in page.text
    panes = {}
    for event in document["events"]:
        pane = client.get(f"/runs/mixed/events/{event['seq']}")
        assert pane.status_code == 200, (event, pane.text)
        assert "could not be laid out" not in pane.text, event
        panes[event.get("name") or event.get("request", {}).get("url") or event["kind"]] = pane.text
    top = max(e["seq"] for e in _document(recorded)["events"])
    by_seq = {i: client.get(f"/runs/mixed/events/{top + i}").text for i in range(1, len(EXTRA) + 1)}
    assert "db.query" in by_seq[1] and "select 1" in by_seq[1] and "Result" in by_seq[1]
    assert "PaymentError: declined &lt;b&gt;hard&lt;/b&gt;" in by_seq[2]
    assert "MCP session" in by_seq[3] and "→ sent" in by_seq[3] and "tools/call" in by_seq[3]
    assert "← received" in by_seq[3] and "weather-mcp" in by_seq[3]
    assert "WebSocket" in by_seq[4] and "1000 (bye)" in by_seq[4] and "binary: 8 bytes" in by_seq[4]
    assert '<mark class="redacted">[REDACTED]</mark>' in by_seq[4]
    assert "Quantum" in by_seq[5] and "qubits" in by_seq[5]
    assert "example.com" in by_seq[6]
    assert f"binary: {len(PNG):,} bytes; the first 512 as hex" in by_seq[7]
    assert "00000000  89 50 4e 47 0d 0a 1a 0a" in by_seq[7]
    assert "Cut for the page" in by_seq[8] and f"/runs/mixed/events/{top + 8}/response" in by_seq[8]
    assert len(by_seq[8]) < HUGE  # the page holds a part of it
    assert "not a stored body" in by_seq[9]
    assert "base64 that does not decode" in by_seq[10]
    assert "no sse" in by_seq[11]
    assert "boom" in by_seq[16]
    # The whole of a cut body and of a binary one, as recorded.
    for index, original in ((8, EXTRA[7]), (7, EXTRA[6])):
        full = client.get(f"/runs/mixed/events/{top + index}/response")
        assert full.status_code == 200
        assert full.content == _body.decode_body(original["response"]["body"])
        assert full.headers["content-disposition"].startswith("attachment; filename=")
        assert "sandbox" in full.headers["content-security-policy"]
        assert full.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/runs/mixed/events/{top + 1}/stream").status_code == 404
    assert client.get("/runs/mixed/events/99999").status_code == 404
    assert client.get("/runs/mixed/events/not-a-number").status_code == 404


def test_a_layout_failure_is_a_note_beside_the_raw_event() -> None:
    from agenttrace._outline import summarize

    class Exploding(dict):
        def get(self, key: str, default: Any = None) -> Any:
            if key == "request":
                raise RuntimeError("unreadable")
            return super().get(key, default)

    event = Exploding(seq=1, kind="http", response={"status": 200})
    pane = detail.event_detail(event, summarize({"seq": 1, "kind": "http"}))
    assert pane.note and "RuntimeError: unreadable" in pane.note
    assert '"status": 200' in pane.raw.text


def test_corrupt_and_foreign_files_are_skipped_with_a_note(recorded: Run, tmp_path: Path) -> None:
    good = _document(recorded)
    (tmp_path / "good.json").write_text(json.dumps(good), encoding="utf-8")
    (tmp_path / "truncated.json").write_text(json.dumps(good)[:500], encoding="utf-8")
    (tmp_path / "foreign.json").write_text('{"hello": "world"}', encoding="utf-8")
    (tmp_path / "empty.json").write_text("", encoding="utf-8")
    mixed = copy.deepcopy(good)
    mixed["events"][0]["seq"] = "one"  # seq numbers that cannot be sorted
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "mixed.json").write_text(json.dumps(mixed), encoding="utf-8")
    client = _client(tmp_path)
    listed = client.get("/")
    assert listed.status_code == 200
    assert listed.text.count('class="run"') == 1 and "/runs/good" in listed.text
    for reason in ("looks truncated", "format None is not supported", "the file is empty"):
        assert reason in listed.text, reason
    assert "nested/mixed.json: not a trace this version can read (TypeError" in listed.text
    for name in ("truncated", "foreign", "empty", "nested~mixed"):
        page = client.get(f"/runs/{name}")
        assert page.status_code == 422 and "This run cannot be read" in page.text, name
    assert client.get("/runs/good").status_code == 200
    assert client.get("/runs/..~..~etc~passwd").status_code == 404  # ids are looked up, not joined


def test_local_paging_and_status_filter(recorded: Run, tmp_path: Path) -> None:
    good = _document(recorded)
    store = tmp_path / ".agenttrace"
    (store / "traces").mkdir(parents=True)
    ids = []
    for index in range(5):
        trace_id = f"{index:032x}"
        document = {**good, "trace_id": trace_id}
        document["run"] = {**good["run"], "status": "error" if index % 2 else "ok"}
        path = store / "traces" / f"{trace_id}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        os.utime(path, ns=(10**18 + index * 10**9, 10**18 + index * 10**9))
        ids.append(trace_id)
    runs = sources.LocalRuns(store)
    seen, cursor = [], None
    while True:
        page = runs.runs(limit=2, cursor=cursor)
        seen += [r.run_id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    failed = runs.runs(status="error", limit=10)
    assert [r.run_id for r in failed.runs] == [ids[3], ids[1]]
    assert all(r.calls == 3 and r.usage is not None for r in failed.runs)
    with pytest.raises(sources.CursorError):
        runs.runs(cursor="###")
    html = _client(store).get("/?limit=2").text
    assert html.count('class="run"') == 2 and "Older runs" in html


def test_a_20k_event_run_page_renders_quickly(recorded: Run, tmp_path: Path) -> None:
    good = _document(recorded)
    events = []
    while len(events) < 20_000:
        for event in good["events"]:
            events.append({**event, "seq": len(events) + 1})
    path = tmp_path / "big.json"
    path.write_text(json.dumps({**good, "events": events[:20_000]}), encoding="utf-8")
    client = _client(path)
    started = time.perf_counter()
    page = client.get("/runs/big")
    elapsed = time.perf_counter() - started
    assert page.status_code == 200
    # Repeated calls and facts fold as in `agenttrace show`: the page stays small.
    assert "19991 events folded" in page.text and len(page.text) < 200_000
    assert elapsed < 30, f"the page of a 20k-event run took {elapsed:.1f} s"
    started = time.perf_counter()
    assert client.get("/runs/big/events/19999").status_code == 200  # the document is cached
    pane = time.perf_counter() - started
    # Every row (?all=1): 4 steps and 20,000 events, cut at the limit, saying how many are left.
    checked = _trace.load_document(path)[0]
    every = waterfall.waterfall(checked, outline(checked), every_row=True, max_rows=500)
    assert len(every.rows) == 500 and every.more_rows == 20_004 - 500 and every.folded == 0
    print(f"run page of 20k events: {elapsed:.2f} s; an event pane then: {pane:.2f} s")


def test_session_tokens_expire_and_name_one_project() -> None:
    keys = {
        "at_test_aaaaaaaaaaaaaaaaaaaa": "project-a",
        "at_test_bbbbbbbbbbbbbbbbbbbb": "project-b",
    }
    gate = access.KeyAccess(keys, lambda project: project)  # type: ignore[arg-type, return-value]
    token = gate.sign_in(" at_test_aaaaaaaaaaaaaaaaaaaa ", now=1000.0)
    assert token is not None and "at_test" not in token
    assert gate.project(token, now=1000.0) == "project-a"
    assert gate.project(token, now=1000.0 + access.SESSION_SECONDS + 1) is None
    assert gate.sign_in("at_test_cccccccccccccccccccc") is None
    assert gate.project(token.replace("project-a", "project-b"), now=1000.0) is None
    assert gate.project("", now=1000.0) is None and gate.project("a.b.c.d", now=1000.0) is None


def test_the_viewer_ships_in_a_non_editable_install(tmp_path: Path) -> None:
    """Templates and static files are package data: the wheel carries them."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("agenttrace", "instrumentors", "exporters"):
        shutil.copytree(
            REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("agenttrace-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    package = "agenttrace/server/viewer"
    templates = sorted(p.name for p in (REPO_ROOT / package / "templates").iterdir())
    static = sorted(p.name for p in (REPO_ROOT / package / "static").iterdir())
    assert "run.html" in templates and "viewer.js" in static
    for name in templates:
        assert f"{package}/templates/{name}" in names
    for name in static:
        assert f"{package}/static/{name}" in names
