"""websockets, asyncio and sync clients: recorded against a real ``websockets`` server, replayed
under governance with the server stopped (no socket: a connection would be a SandboxEscape).

The agent's view (messages, binary frames, close codes, exceptions) must be identical, and the
recording must hold the frames in order with their direction.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from conftest import record_in_process, start_replay
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.sync.client import connect as sync_connect

import agenttrace


class WebsocketServer:
    """A real websockets server in a thread: a welcome, JSON echo, reversed bytes, close on bye."""

    def __init__(self) -> None:
        self.connections = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _handler(self, ws: Any) -> None:
        self.connections += 1
        await ws.send(json.dumps({"hello": ws.request.path}))
        async for message in ws:
            if message == "bye":
                await ws.close(4000, "done")
                return
            if isinstance(message, bytes):
                await ws.send(message[::-1])
            else:
                await ws.send(json.dumps({"echo": json.loads(message)}))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._stop.done():
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[WebsocketServer]:
    srv = WebsocketServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def no_session_left() -> Iterator[None]:
    agenttrace.shutdown()
    yield
    agenttrace.shutdown()


def asyncio_agent(url: str) -> list[Any]:
    async def talk() -> list[Any]:
        seen: list[Any] = []
        async with connect(url + "/chat", additional_headers={"X-Agent": "1"}) as ws:
            seen.append(await ws.recv())
            await ws.send(json.dumps({"q": 1, "items": [1, 2]}))
            seen.append(await ws.recv())
            await ws.send(b"\x01\x02\x03")
            seen.append(await ws.recv())
            await ws.send("bye")
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                seen.append([type(exc).__name__, exc.rcvd.code, exc.rcvd.reason])
        return seen

    return asyncio.run(talk())


def sync_agent(url: str) -> list[Any]:
    seen: list[Any] = []
    with sync_connect(url + "/sync") as ws:
        seen.append(ws.recv())
        ws.send(json.dumps({"q": 2}))
        seen.append(ws.recv(timeout=5))
        for message in [b"abc"]:
            ws.send(message)
            seen.append(ws.recv())
    seen.append(ws.close_code)
    return seen


def async_iterating_agent(url: str) -> list[Any]:
    async def talk() -> list[Any]:
        seen: list[Any] = []
        async with connect(url + "/iter") as ws:
            await ws.send(json.dumps({"n": 1}))
            await ws.send("bye")
            async for message in ws:  # ends with the server's close (4000 is not 1000: an error)
                seen.append(message)
        return seen

    try:
        return asyncio.run(talk())
    except websockets.ConnectionClosedError as exc:
        return ["closed", exc.rcvd.code]


AGENTS = {"asyncio": asyncio_agent, "sync": sync_agent, "async-for": async_iterating_agent}


def websocket_events(path: Path) -> list[dict[str, Any]]:
    return [e for e in json.loads(path.read_text())["events"] if e["kind"] == "websocket"]


def record(tmp_path: Path, agent: Any, url: str) -> Any:
    return record_in_process(tmp_path, lambda: agent(url))


@pytest.mark.parametrize("name", AGENTS)
def test_records_every_frame_and_replays_identically_offline(tmp_path, server, name):
    agent = AGENTS[name]
    recorded = record(tmp_path, agent, server.url)
    (event,) = websocket_events(tmp_path / "last.json")
    assert event["response"]["status"] == 101
    welcome = [f for f in event["frames"] if f["dir"] == "recv"][0]
    assert welcome["text"].startswith('{"hello"')
    if name != "async-for":  # that agent sends before it reads: the welcome comes in between
        assert [f["dir"] for f in event["frames"]][:2] == ["recv", "send"]
    if name == "asyncio":
        assert ["X-Agent", "1"] in event["request"]["headers"]
        assert {"dir": "send", "base64": "AQID"}.items() <= event["frames"][3].items()
        assert event["close"] == {"code": 4000, "reason": "done", "by": "server"}
    connections = server.connections
    server.stop()

    for _ in range(3):  # stable: the same answers every time
        session = start_replay(tmp_path)
        replayed = agent(server.url)
        violations, unplayed = session.violations, session.unplayed()
        agenttrace.shutdown()
        assert replayed == recorded
        assert violations == [] and unplayed == []
    assert server.connections == connections
    (replayed_event,) = websocket_events(tmp_path / "replays" / "last.json")
    assert replayed_event["frames"] == event["frames"]


def test_a_different_message_is_a_divergence_naming_the_frame_and_the_field(tmp_path, server):
    record(tmp_path, asyncio_agent, server.url)
    server.stop()
    start_replay(tmp_path)

    async def changed() -> None:
        async with connect(server.url + "/chat") as ws:
            await ws.recv()
            await ws.send(json.dumps({"q": 2, "items": [1, 2]}))

    with pytest.raises(agenttrace.ReplayDivergence) as caught:
        asyncio.run(changed())
    message = str(caught.value)
    assert "message #1" in message and "[1].q: recorded 1, now 2" in message, message


def test_receiving_past_the_end_of_the_recording(tmp_path, server):
    def short(url: str) -> Any:
        with sync_connect(url + "/short") as ws:
            return ws.recv()

    def greedy(url: str) -> Any:
        with sync_connect(url + "/short") as ws:
            ws.recv()
            ws.recv()

    record(tmp_path, short, server.url)
    server.stop()
    start_replay(tmp_path)
    with pytest.raises(agenttrace.ReplayDivergence, match="recording ends here"):
        greedy(server.url)
    agenttrace.shutdown()

    session = start_replay(tmp_path, level="relaxed")
    with pytest.raises(websockets.ConnectionClosedError):  # the client's own error
        greedy(server.url)
    assert any("recording ends here" in v for v in session.violations)


def test_an_unrecorded_connection_is_a_divergence(tmp_path, server):
    record(tmp_path, sync_agent, server.url)
    server.stop()
    start_replay(tmp_path)
    with pytest.raises(agenttrace.ReplayDivergence, match="unrecorded websocket session"):
        sync_agent(server.url.replace("127.0.0.1", "localhost"))
