"""Sessions in one process: record, record, replay, replay — nothing leaks between them."""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import shutil
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import mcp.client.sse as mcp_sse
import mcp.client.stdio as mcp_stdio
import mcp.client.streamable_http as mcp_http
import pytest
import requests
import urllib3
import websockets.asyncio.client as ws_asyncio
import websockets.asyncio.connection as ws_asyncio_connection
import websockets.client as ws_sans_io
import websockets.sync.client as ws_sync
import websockets.sync.connection as ws_sync_connection

import agenttrace
from agenttrace import _config, _session


def _agent(url: str) -> str:
    """A little of everything a session intercepts: four clients, threads, entropy, clock."""
    out: list[Any] = [
        requests.get(url + "/weather?city=Oslo").json(),
        httpx.post(url + "/echo", json={"n": random.randint(0, 10**6)}).json(),
        httpx2.get(url + "/weather?city=Rome").json()["city"],
        json.loads(urllib.request.urlopen(url + "/weather?city=Lima").read())["city"],
        str(uuid.uuid4()),
        secrets.token_hex(8),
        random.random(),
        os.urandom(4).hex(),
    ]
    with ThreadPoolExecutor(2) as pool:
        out += list(pool.map(lambda c: requests.get(f"{url}/weather?city={c}").json(), "AB"))
    return json.dumps(out, sort_keys=True)


# What any session patches; after the last one stops, every one of them is back.
def _patched_attributes() -> dict[str, Any]:
    return {
        "os.urandom": os.urandom,
        "os.getrandom": getattr(os, "getrandom", None),
        "random._urandom": random._urandom,  # type: ignore[attr-defined]
        "random.Random.seed": vars(random.Random).get("seed"),
        "socket.getaddrinfo": socket.getaddrinfo,
        "threading.Thread.start": vars(threading.Thread).get("start"),
        "ThreadPoolExecutor.submit": vars(ThreadPoolExecutor).get("submit"),
        "sys.exit": sys.exit,
        "sys.excepthook": sys.excepthook,
        "uuid.getnode": uuid.getnode,
        "httpx.Client": vars(httpx.Client).get("_transport_for_url"),
        "httpx.AsyncClient": vars(httpx.AsyncClient).get("_transport_for_url"),
        "httpx2.Client": vars(httpx2.Client).get("_transport_for_url"),
        "httpx2.AsyncClient": vars(httpx2.AsyncClient).get("_transport_for_url"),
        "urllib3.urlopen": vars(urllib3.connectionpool.HTTPConnectionPool).get("urlopen"),
        "urllib3.HTTPResponse": vars(urllib3.response.HTTPResponse).get("__init__"),
        "http.client.request": vars(http.client.HTTPConnection).get("request"),
        "http.client.getresponse": vars(http.client.HTTPConnection).get("getresponse"),
        "requests.Session.send": vars(requests.Session).get("send"),
        "aiohttp.ClientSession.__init__": vars(aiohttp.ClientSession).get("__init__"),
        **{
            f"websockets.ClientProtocol.{name}": vars(ws_sans_io.ClientProtocol).get(name)
            for name in (
                "__init__",
                "connect",
                "send_request",
                "events_received",
                "receive_data",
                "receive_eof",
                "send_text",
                "send_binary",
                "send_continuation",
                "send_close",
                "send_ping",
                "send_pong",
                "fail",
            )
        },
        **{
            f"websockets.asyncio.connect.{name}": vars(ws_asyncio.connect).get(name)
            for name in ("open_tcp_connection", "create_connection")
        },
        "websockets.asyncio.recv": vars(ws_asyncio_connection.Connection).get("recv"),
        "websockets.sync.recv": vars(ws_sync_connection.Connection).get("recv"),
        "websockets.sync.socket": ws_sync.socket,
        "websockets.sync.parse_uri": ws_sync.parse_uri,
        **{
            f"websockets.sync.reconnect.{name}": vars(getattr(ws_sync, "reconnect", object)).get(
                name
            )
            for name in ("open_connection", "open_socket", "enable_tls")
        },
        # the transports' inner generator functions (their asynccontextmanager closures)
        "mcp.stdio_client": mcp_stdio.stdio_client.__closure__[0].cell_contents,
        "mcp.streamable_http_client": mcp_http.streamable_http_client.__closure__[0].cell_contents,
        "mcp.sse_client": mcp_sse.sse_client.__closure__[0].cell_contents,
    }


@pytest.fixture(autouse=True)
def no_session_left() -> Iterator[None]:
    agenttrace.shutdown()
    yield
    left = _session.current()
    if left is not None:  # a failed test's own session
        left.stop()


def _session_for(tmp_path: Path, **settings: Any) -> _session.Session:
    resolved = _config.resolve({"local_dir": str(tmp_path / ".agenttrace"), **settings})
    return _session.Session(resolved, owns_exit=False).start()


def test_two_recordings_and_two_replays_in_one_process_leave_nothing_behind(tmp_path, llm_server):
    before = _patched_attributes()
    outputs, traces = [], []
    for n in (1, 2):
        session = _session_for(tmp_path)
        assert _patched_attributes() != before  # it does patch
        outputs.append(_agent(llm_server.url))
        session.stop()
        trace = tmp_path / f"recording-{n}.json"
        shutil.copy(tmp_path / ".agenttrace" / "last.json", trace)
        traces.append(trace)
        assert _patched_attributes() == before, f"record session {n} left patches behind"
    assert outputs[0] != outputs[1]  # fresh entropy each time: the replays below prove something

    served = llm_server.request_count
    for n, (expected, trace) in enumerate(zip(outputs, traces, strict=True), start=1):
        session = _session_for(
            tmp_path, mode="replay", governance_level="governance", replay_events=str(trace)
        )
        replayed = _agent(llm_server.url)
        violations, unplayed = session.violations, session.unplayed()
        session.stop()
        assert replayed == expected, f"replay {n} differs from its recording"
        assert violations == [] and unplayed == []
        assert _patched_attributes() == before, f"replay session {n} left patches behind"
    assert llm_server.request_count == served  # no replay reached the network
    assert _session.current() is None


def test_a_second_session_cannot_start_while_one_runs(tmp_path):
    first = _session_for(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="another AgentTrace session is running"):
            _session_for(tmp_path / "other")
    finally:
        first.stop()
    _session_for(tmp_path / "after").stop()  # once stopped, the next one starts


def test_the_replayed_clock_is_undone_with_the_session(tmp_path):
    session = _session_for(tmp_path)
    session.stop()
    path = tmp_path / ".agenttrace" / "last.json"
    document = json.loads(path.read_text())
    document["run"]["clock_start"] = 1577836800.0  # 2020-01-01: unmistakably not now
    path.write_text(json.dumps(document))
    session = _session_for(tmp_path, mode="replay", replay_events=str(path))
    replayed_now = time.time()
    session.stop()
    assert 1577836800.0 <= replayed_now < 1577836800.0 + 60
    assert time.time() > 1.7e9  # the travel was undone with the session
