"""Every HTTP client, every kind of exchange: recorded completely, replayed identically offline.

Each case records a scenario against a local server (tests/_http.py), checks the event, stops
the server, replays the recording in-process under governance (any socket would raise
SandboxEscape) and compares what the agent saw: status, headers, body, exception type and
message.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import requests
import urllib3
from _http import BINARY, GZIP_PAYLOAD, SSE_EVENTS, TestServer

import agenttrace
from agenttrace import _runtime

TIMEOUT_S = 0.3
REFUSED_URL = "http://127.0.0.1:1/refused"  # port 1: nothing listens there

Result = dict[str, Any]
# What a client does: (url, on_first) -> Result. on_first() is called once the caller holds the
# first piece of a streamed body; it lets the server send the rest.
Scenario = Callable[[str, Callable[[], None]], Result]


# -- what each client presents to the agent ------------------------------------------------------


def _error(exc: BaseException) -> Result:
    reason = getattr(exc, "reason", None)
    return {
        "error": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "reason": type(reason).__qualname__ if isinstance(reason, BaseException) else None,
    }


class RequestsClient:
    def send(self, method: str, url: str, **kw: Any) -> Result:
        r = requests.request(method, url, **kw)
        return {"status": r.status_code, "headers": sorted(r.headers.items()), "body": r.content}

    def sse(self, url: str, on_first: Callable[[], None]) -> list[bytes]:
        with requests.get(url, stream=True) as r:
            lines = r.iter_lines()
            received = [next(lines)]
            on_first()
            return received + list(lines)


class Urllib3Client:
    def send(self, method: str, url: str, **kw: Any) -> Result:
        if "json" in kw:
            kw["body"] = json.dumps(kw.pop("json")).encode()
            kw["headers"] = {"Content-Type": "application/json"}
        if "timeout" in kw:
            kw["retries"] = 1  # a retried read timeout: MaxRetryError(ReadTimeoutError)
        r = urllib3.PoolManager().request(method, url, **kw)  # preload_content: read in urlopen
        return {"status": r.status, "headers": sorted(r.headers.items()), "body": r.data}

    def sse(self, url: str, on_first: Callable[[], None]) -> list[bytes]:
        r = urllib3.PoolManager().request("GET", url, preload_content=False)
        pieces = r.stream(1024)
        received = [next(pieces)]
        on_first()
        received += list(pieces)
        r.release_conn()
        return received


class UrllibClient:
    def send(self, method: str, url: str, **kw: Any) -> Result:
        data = json.dumps(kw["json"]).encode() if "json" in kw else None
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=kw.get("timeout")) as r:
                return {"status": r.status, "headers": sorted(r.getheaders()), "body": r.read()}
        except urllib.error.HTTPError as exc:  # a 404 is an exception carrying the response
            with exc:
                return {
                    "status": exc.code,
                    "headers": sorted(exc.headers.items()),
                    "body": exc.read(),
                }

    def sse(self, url: str, on_first: Callable[[], None]) -> list[bytes]:
        with urllib.request.urlopen(url) as r:
            received = [r.readline()]
            on_first()
            return received + list(r)


class HttpxClient:
    def __init__(self, module: Any) -> None:
        self.module = module

    def send(self, method: str, url: str, **kw: Any) -> Result:
        with self.module.Client() as client:
            r = client.request(method, url, **kw)
            return _httpx_result(r)

    def sse(self, url: str, on_first: Callable[[], None]) -> list[bytes]:
        with self.module.Client() as client, client.stream("GET", url) as r:
            pieces = r.iter_bytes()
            received = [next(pieces)]
            on_first()
            return received + list(pieces)


class AsyncHttpxClient(HttpxClient):
    def send(self, method: str, url: str, **kw: Any) -> Result:
        async def go() -> Result:
            async with self.module.AsyncClient() as client:
                return _httpx_result(await client.request(method, url, **kw))

        return asyncio.run(go())

    def sse(self, url: str, on_first: Callable[[], None]) -> list[bytes]:
        async def go() -> list[bytes]:
            async with self.module.AsyncClient() as client, client.stream("GET", url) as r:
                pieces = r.aiter_bytes()
                received = [await pieces.__anext__()]
                on_first()
                return received + [piece async for piece in pieces]

        return asyncio.run(go())


def _httpx_result(r: Any) -> Result:
    return {"status": r.status_code, "headers": sorted(r.headers.multi_items()), "body": r.content}


CLIENTS = {
    "requests": RequestsClient(),
    "urllib3": Urllib3Client(),
    "urllib": UrllibClient(),
    "httpx": HttpxClient(httpx),
    "httpx-async": AsyncHttpxClient(httpx),
    "httpx2": HttpxClient(httpx2),
    "httpx2-async": AsyncHttpxClient(httpx2),
}


# -- scenarios ----------------------------------------------------------------------------------------


def _guarded(send: Callable[[], Result]) -> Result:
    try:
        return send()
    except Exception as exc:
        return _error(exc)


def json_post(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("POST", base + "/json", json={"q": "weather", "n": [1, 2]}))


def sse(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    pieces = client.sse(base + "/sse", on_first)  # lines or raw pieces, as the client yields
    lines = b"\n".join(pieces).splitlines()
    return {"first": pieces[0].strip(), "lines": [line for line in lines if line.strip()]}


def binary(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("GET", base + "/binary"))


def gzipped(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    result = _guarded(lambda: client.send("GET", base + "/gzip"))
    # Bodies are stored decoded and replay re-applies the content-coding: the compressed bytes
    # (and so Content-Length) may differ; what they decode to may not. urllib does not decode.
    if result["body"][:2] == b"\x1f\x8b":
        result["body"] = gzip.decompress(result["body"])
    result["headers"] = [h for h in result["headers"] if h[0].lower() != "content-length"]
    return result


def not_found(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("GET", base + "/missing"))


def refused(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("GET", REFUSED_URL))


def timeout(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("GET", base + "/slow", timeout=TIMEOUT_S))


SCENARIOS = {
    "json_post": json_post,
    "sse": sse,
    "binary": binary,
    "gzip": gzipped,
    "not_found": not_found,
    "refused": refused,
    "timeout": timeout,
}


# -- what the recording must hold -------------------------------------------------------------------


def check_json_post(event: dict[str, Any], result: Result) -> None:
    assert result["status"] == 200
    assert event["request"]["method"] == "POST"
    assert event["request"]["body"]["json"] == {"q": "weather", "n": [1, 2]}
    assert event["response"]["body"]["json"] == {"ok": True, "echo": {"q": "weather", "n": [1, 2]}}


def check_sse(event: dict[str, Any], result: Result) -> None:
    chunks = event["response"]["chunks"]
    assert len(chunks) > 1, chunks
    # Chunks are what the caller read: urllib's readline() takes the first line alone.
    assert chunks[0]["text"].strip() == SSE_EVENTS[0].decode().strip()
    assert "".join(c["text"] for c in chunks) == b"".join(SSE_EVENTS).decode()
    assert result["first"] == SSE_EVENTS[0].strip()


def check_binary(event: dict[str, Any], result: Result) -> None:
    assert result["body"] == BINARY
    assert "base64" in event["response"]["body"]


def check_gzip(event: dict[str, Any], result: Result) -> None:
    assert json.loads(result["body"]) == GZIP_PAYLOAD
    assert event["response"]["body"]["json"] == GZIP_PAYLOAD
    assert ["Content-Encoding", "gzip"] in event["response"]["headers"]


def check_not_found(event: dict[str, Any], result: Result) -> None:
    assert result["status"] == 404
    assert event["response"]["status"] == 404
    assert event["response"]["body"]["json"]["error"] == "not found"


def check_refused(event: dict[str, Any], result: Result) -> None:
    assert "error" in result and "response" not in event
    assert event["error"]["type"]


def check_timeout(event: dict[str, Any], result: Result) -> None:
    assert "error" in result and "response" not in event
    assert "imeout" in event["error"]["type"] + event["error"].get("message", "") + str(
        event["error"].get("attrs", {}).get("reason")
    )


CHECKS = {
    "json_post": check_json_post,
    "sse": check_sse,
    "binary": check_binary,
    "gzip": check_gzip,
    "not_found": check_not_found,
    "refused": check_refused,
    "timeout": check_timeout,
}


# -- fixtures and the round trip ---------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[TestServer]:
    srv = TestServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def no_runtime_left() -> Iterator[None]:
    """Each test owns the process-wide runtime: none before, none after (even on failure)."""
    agenttrace.shutdown()
    yield
    agenttrace.shutdown()


def http_events(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    return [e for e in document["events"] if e["kind"] == "http"]


def record(tmp_path: Path, run: Callable[[], Result]) -> tuple[Result, list[dict[str, Any]]]:
    agenttrace.init(local_dir=str(tmp_path))
    result = run()
    agenttrace.shutdown()
    return result, http_events(tmp_path / "last.json")


def replay(tmp_path: Path, run: Callable[[], Result]) -> tuple[Result, list[dict[str, Any]]]:
    agenttrace.init(
        mode="replay",
        governance_level="governance",
        replay_events=str(tmp_path / "last.json"),
        local_dir=str(tmp_path),
    )
    runtime = _runtime.current_runtime()
    assert runtime is not None and runtime.governance is not None
    result = run()
    violations = list(runtime.governance.violations)
    unplayed = runtime.engine.unplayed() if runtime.engine else []
    agenttrace.shutdown()
    assert not violations and not unplayed, (violations, unplayed)
    return result, http_events(tmp_path / "replays" / "last.json")


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("client_name", CLIENTS)
def test_records_completely_and_replays_identically(
    tmp_path: Path, server: TestServer, client_name: str, scenario: str
) -> None:
    client, play = CLIENTS[client_name], SCENARIOS[scenario]

    def release() -> None:
        time.sleep(0.005)  # past the recorder's 1 ms coalescing window: two distinct chunks
        server.sse_release.set()

    recorded, events = record(tmp_path, lambda: play(client, server.url, release))
    assert len(events) == 1, events
    event = events[0]
    assert event["duration_ms"] >= 0 and event["request"]["url"].endswith(
        {"refused": "/refused"}.get(scenario, "")
    )
    CHECKS[scenario](event, recorded)
    if scenario == "sse":
        assert server.sse_released_in_time, "the client buffered the stream"

    server.stop()
    served = server.requests
    replayed, replay_events = replay(tmp_path, lambda: play(client, server.url, lambda: None))
    assert replayed == recorded
    assert server.requests == served
    assert len(replay_events) == 1
    assert replay_events[0].get("response", {}).get("status") == event.get("response", {}).get(
        "status"
    )
    assert (replay_events[0].get("error") or {}).get("type") == (event.get("error") or {}).get(
        "type"
    )
