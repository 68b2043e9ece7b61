"""MCP client sessions over stdio, streamable HTTP and SSE, against a real MCP server (the mcp
package's own server, FastMCP's successor): recorded, then replayed under governance with no
server at all — the stdio server script is deleted and the HTTP server stopped first.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import clean_env, free_port, run_python

SERVER = """
import sys
try:
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server
mcp = Server("weather")

@mcp.tool()
def get_weather(city: str) -> dict:
    \"\"\"The weather in a city.\"\"\"
    return {"city": city, "temp_c": len(city) * 3}

@mcp.resource("notes://today")
def notes() -> str:
    return "bring an umbrella"

if __name__ == "__main__":
    if len(sys.argv) > 1:  # transport, port
        mcp.run(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
"""

AGENT = """
import asyncio, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client                   # imported before init(): still captured
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
import agenttrace
agenttrace.init()

async def use(session):
    await session.initialize()
    print("tools", [t.name for t in (await session.list_tools()).tools])
    for city in os.environ.get("CITIES", "Paris,Oslo").split(","):
        result = await session.call_tool("get_weather", {"city": city})
        print("call", [c.text for c in result.content])
    print("resource", [c.text for c in (await session.read_resource("notes://today")).contents])

async def main():
    if os.environ.get("MCP_URL"):
        transport = sse_client if os.environ["MCP_URL"].endswith("/sse") else streamable_http_client
        async with transport(os.environ["MCP_URL"]) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await use(session)
    else:
        params = StdioServerParameters(command=sys.executable, args=[os.environ["SERVER"]])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await use(session)

asyncio.run(main())
"""

REPLAY = {"AGENTTRACE_MODE": "replay", "AGENTTRACE_GOVERNANCE_LEVEL": "governance"}


def events(tmp_path: Path, kind: str | None = None, replayed: bool = False) -> list[dict]:
    where = tmp_path / ".agenttrace" / ("replays" if replayed else "") / "last.json"
    found = json.loads(where.read_text())["events"]
    return [e for e in found if kind is None or e["kind"] == kind]


def check_session(event: dict) -> None:
    methods = [m["json"].get("method") for m in event["messages"] if m["dir"] == "send"]
    assert methods[:3] == ["initialize", "notifications/initialized", "tools/list"]
    assert methods.count("tools/call") == 2 and "resources/read" in methods
    answers = [m["json"] for m in event["messages"] if m["dir"] == "recv"]
    assert any("bring an umbrella" in json.dumps(a) for a in answers)


def replay_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **REPLAY,
        "AGENTTRACE_REPLAY_EVENTS_FILE": str(tmp_path / ".agenttrace/last.json"),
        **extra,
    }


def test_stdio_session_replays_with_the_server_script_gone(tmp_path):
    server = tmp_path / "weather_server.py"
    server.write_text(SERVER)
    recorded = run_python(AGENT, env={"SERVER": str(server)}, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    assert "call ['{" in recorded.stdout
    (event,) = events(tmp_path, "mcp")
    assert event["transport"] == "stdio" and event["server"]["args"] == [str(server)]
    check_session(event)
    assert events(tmp_path, "http") == []

    server.unlink()  # a replay that spawned it would fail (and be a SandboxEscape)
    for _ in range(3):
        replayed = run_python(AGENT, env=replay_env(tmp_path, SERVER=str(server)), cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout == recorded.stdout
    assert len(events(tmp_path, "mcp", replayed=True)) == 1

    changed = run_python(
        AGENT, env=replay_env(tmp_path, SERVER=str(server), CITIES="Paris,Lima"), cwd=tmp_path
    )
    assert changed.returncode != 0
    assert 'params.arguments.city: recorded "Oslo", now "Lima"' in changed.stderr, changed.stderr


@pytest.fixture(params=["streamable-http", "sse"])
def http_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, subprocess.Popen]]:
    script = tmp_path / "http_server.py"
    script.write_text(SERVER)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), request.param, str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        path = "/mcp" if request.param == "streamable-http" else "/sse"
        yield f"http://127.0.0.1:{port}{path}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_http_session_is_one_mcp_event_and_replays_offline(tmp_path, http_server):
    url, proc = http_server
    recorded = run_python(AGENT, env={"MCP_URL": url}, cwd=tmp_path, timeout=60)
    assert recorded.returncode == 0, recorded.stderr  # the long-lived SSE GET did not hang it
    (event,) = events(tmp_path, "mcp")
    transport = "sse" if url.endswith("/sse") else "streamable-http"
    assert event["transport"] == transport and event["server"] == {"url": url}
    check_session(event)
    assert events(tmp_path, "http") == []  # its HTTP is the session's, not captured again

    proc.terminate()
    proc.wait(10)
    for _ in range(2):
        replayed = run_python(AGENT, env=replay_env(tmp_path, MCP_URL=url), cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout == recorded.stdout
