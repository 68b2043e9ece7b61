"""Every HTTP client, every kind of exchange: recorded completely, replayed identically offline.

Each case records a scenario against a local server (tests/_http.py), checks the event, stops
the server, replays the recording in-process under governance (any socket would raise
SandboxEscape) and compares what the agent saw: status, headers, body, exception type and
message.
"""

from __future__ import annotations

import _thread
import asyncio
import gzip
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import httpx_aiohttp
import pytest
import requests
import urllib3
from _http import BINARY, GZIP_PAYLOAD, SSE_EVENTS, TestServer
from agenttrace.instrumentors import http_client
from agenttrace.instrumentors import urllib3 as urllib3_instrumentor
from opentelemetry import trace

import agenttrace
from agenttrace import _session

TIMEOUT_S = 0.3
REFUSED_URL = "http://127.0.0.1:1/refused"  # port 1: nothing listens there

Result = dict[str, Any]
# What the agent does: (client, base URL, on_first) -> what it saw. on_first() is called once
# the caller holds the first piece of a streamed body; it lets the server send the rest.
Scenario = Callable[[Any, str, Callable[[], None]], Result]


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

    def sse(
        self, url: str, on_first: Callable[[], None], timeout: float | None = None
    ) -> list[bytes]:
        with requests.get(url, stream=True, timeout=timeout) as r:
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

    def sse(
        self, url: str, on_first: Callable[[], None], timeout: float | None = None
    ) -> list[bytes]:
        r = urllib3.PoolManager().request("GET", url, preload_content=False, timeout=timeout)
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

    def sse(
        self, url: str, on_first: Callable[[], None], timeout: float | None = None
    ) -> list[bytes]:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            received = [r.readline()]
            on_first()
            return received + list(r)


class HttpxClient:
    def __init__(self, module: Any) -> None:
        self.module = module

    def client(self, **kw: Any) -> Any:
        return self.module.Client(**kw)

    def send(self, method: str, url: str, **kw: Any) -> Result:
        with self.client() as client:
            r = client.request(method, url, follow_redirects=True, **kw)
            return _httpx_result(r)

    def sse(
        self, url: str, on_first: Callable[[], None], timeout: float | None = None
    ) -> list[bytes]:
        with self.client(timeout=timeout) as client, client.stream("GET", url) as r:
            pieces = r.iter_bytes()
            received = [next(pieces)]
            on_first()
            return received + list(pieces)


class AsyncHttpxClient(HttpxClient):
    def client(self, **kw: Any) -> Any:
        return self.module.AsyncClient(**kw)

    def send(self, method: str, url: str, **kw: Any) -> Result:
        async def go() -> Result:
            async with self.client() as client:
                r = await client.request(method, url, follow_redirects=True, **kw)
                return _httpx_result(r)

        return asyncio.run(go())

    def sse(
        self, url: str, on_first: Callable[[], None], timeout: float | None = None
    ) -> list[bytes]:
        async def go() -> list[bytes]:
            async with self.client(timeout=timeout) as client, client.stream("GET", url) as r:
                pieces = r.aiter_bytes()
                received = [await pieces.__anext__()]
                on_first()
                return received + [piece async for piece in pieces]

        return asyncio.run(go())


def _httpx_result(r: Any) -> Result:
    return {"status": r.status_code, "headers": sorted(r.headers.multi_items()), "body": r.content}


class DelegatingTransport(httpx.BaseTransport):
    """A user's own transport (adds a header, delegates to the default one)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["X-Custom-Transport"] = "1"
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class CustomTransportClient(HttpxClient):
    def client(self, **kw: Any) -> Any:
        return httpx.Client(transport=DelegatingTransport(), **kw)


class HttpxAiohttpClient(AsyncHttpxClient):
    """httpx over httpx-aiohttp's transport (what openai's DefaultAioHttpClient is for httpx2)."""

    def client(self, **kw: Any) -> Any:
        return httpx_aiohttp.HttpxAiohttpClient(**kw)


class AiohttpClient:
    def send(self, method: str, url: str, **kw: Any) -> Result:
        if "timeout" in kw:
            kw["timeout"] = aiohttp.ClientTimeout(total=kw["timeout"])

        async def go() -> Result:
            async with aiohttp.ClientSession() as session, session.request(method, url, **kw) as r:
                body = await r.read()
                return {"status": r.status, "headers": sorted(r.headers.items()), "body": body}

        return asyncio.run(go())

    def sse(
        self, url: str, on_first: Callable[[], None], timeout: float | None = None
    ) -> list[bytes]:
        async def go() -> list[bytes]:
            timeouts = aiohttp.ClientTimeout(sock_read=timeout)
            async with aiohttp.ClientSession(timeout=timeouts) as session, session.get(url) as r:
                pieces = r.content.iter_any()
                received = [await pieces.__anext__()]
                on_first()
                return received + [piece async for piece in pieces]

        return asyncio.run(go())


CLIENTS = {
    "requests": RequestsClient(),
    "urllib3": Urllib3Client(),
    "urllib": UrllibClient(),
    "httpx": HttpxClient(httpx),
    "httpx-async": AsyncHttpxClient(httpx),
    "httpx2": HttpxClient(httpx2),
    "httpx2-async": AsyncHttpxClient(httpx2),
    "httpx-custom-transport": CustomTransportClient(httpx),
    "httpx-aiohttp": HttpxAiohttpClient(httpx),
    "aiohttp": AiohttpClient(),
}
# aiohttp releases a redirect's response without reading its body: only the status is recorded
UNREAD_REDIRECT_BODIES = {"aiohttp"}


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


def stalled_stream(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    firsts: list[bytes] = []

    def first_received() -> None:
        firsts.append(b"seen")
        on_first()

    result = _guarded(lambda: {"pieces": client.sse(base + "/stall", first_received, TIMEOUT_S)})
    return {**result, "first_received": bool(firsts)}


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


def redirect(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("GET", base + "/redirect"))


def truncated(client: Any, base: str, on_first: Callable[[], None]) -> Result:
    return _guarded(lambda: client.send("GET", base + "/truncated"))


SCENARIOS: dict[str, Scenario] = {
    "json_post": json_post,
    "sse": sse,
    "binary": binary,
    "gzip": gzipped,
    "not_found": not_found,
    "refused": refused,
    "timeout": timeout,
    "redirect": redirect,
    "truncated": truncated,
    "stalled_stream": stalled_stream,
}


# -- what the recording must hold -------------------------------------------------------------------


def check_json_post(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert result["status"] == 200
    assert event["request"]["method"] == "POST"
    assert event["request"]["body"]["json"] == {"q": "weather", "n": [1, 2]}
    assert event["response"]["body"]["json"] == {"ok": True, "echo": {"q": "weather", "n": [1, 2]}}


def check_sse(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    chunks = event["response"]["chunks"]
    assert len(chunks) > 1, chunks
    # Chunks are what the caller read: urllib's readline() takes the first line alone.
    assert chunks[0]["text"].strip() == SSE_EVENTS[0].decode().strip()
    assert "".join(c["text"] for c in chunks) == b"".join(SSE_EVENTS).decode()
    assert result["first"] == SSE_EVENTS[0].strip()


def check_binary(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert result["body"] == BINARY
    assert "base64" in event["response"]["body"]


def check_gzip(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert json.loads(result["body"]) == GZIP_PAYLOAD
    assert event["response"]["body"]["json"] == GZIP_PAYLOAD
    assert ["Content-Encoding", "gzip"] in event["response"]["headers"]


def check_not_found(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert result["status"] == 404
    assert event["response"]["status"] == 404
    assert event["response"]["body"]["json"]["error"] == "not found"


def check_refused(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert "error" in result and "response" not in event
    assert event["error"]["type"]


def check_timeout(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert "error" in result and "response" not in event
    assert "imeout" in event["error"]["type"] + event["error"].get("message", "") + str(
        event["error"].get("attrs", {}).get("reason")
    )


def check_redirect(
    events: list[dict[str, Any]], result: Result, reads_redirect_body: bool = True
) -> None:
    assert [e["response"]["status"] for e in events] == [302, 200]
    if reads_redirect_body:
        assert events[0]["response"]["body"]["json"] == {"moved": True}
    assert events[1]["request"]["url"].endswith("/json")
    assert result["status"] == 200


def check_truncated(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert "error" in result and event["error"]["type"]
    if "response" in event:  # the error came while the caller read the body
        assert event["response"]["status"] == 200
    else:  # urllib3 preloads the body inside urlopen, and retries there
        assert event["error"]["type"] == "MaxRetryError"


def check_stalled_stream(events: list[dict[str, Any]], result: Result) -> None:
    (event,) = events
    assert result["first_received"] and "error" in result
    assert event["response"]["status"] == 200 and event["error"]["type"]
    assert "".join(c["text"] for c in event["response"]["chunks"]).strip() == (
        SSE_EVENTS[0].decode().strip()
    )


CHECKS = {
    "json_post": check_json_post,
    "sse": check_sse,
    "binary": check_binary,
    "gzip": check_gzip,
    "not_found": check_not_found,
    "refused": check_refused,
    "timeout": check_timeout,
    "redirect": check_redirect,
    "truncated": check_truncated,
    "stalled_stream": check_stalled_stream,
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
    session = _session.current()
    assert session is not None and session.gate is not None
    result = run()
    violations = session.violations
    unplayed = session.unplayed()
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
    if scenario == "redirect" and client_name in UNREAD_REDIRECT_BODIES:
        check_redirect(events, recorded, reads_redirect_body=False)
    else:
        CHECKS[scenario](events, recorded)
    if scenario == "sse":
        assert server.sse_released_in_time, "the client buffered the stream"

    server.stop()
    served = server.requests
    replayed, replay_events = replay(tmp_path, lambda: play(client, server.url, lambda: None))
    assert replayed == recorded
    assert server.requests == served
    assert [_outcome(e) for e in replay_events] == [_outcome(e) for e in events]


def _outcome(event: dict[str, Any]) -> tuple[Any, ...]:
    response, error = event.get("response") or {}, event.get("error") or {}
    body = response.get("body") or "".join(c.get("text", "") for c in response.get("chunks", []))
    return (event["request"]["url"], response.get("status"), body, error.get("type"))


# -- client-specific behaviour -------------------------------------------------------------------


def test_requests_call_from_a_thread_without_context_joins_the_run(
    tmp_path: Path, server: TestServer
) -> None:
    agenttrace.init(local_dir=str(tmp_path))
    seen: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        seen["had_context"] = trace.get_current_span().get_span_context().is_valid
        seen["status"] = requests.post(server.url + "/json", json={"t": 1}).status_code
        done.set()

    _thread.start_new_thread(work, ())  # not threading.Thread: no context is carried over
    assert done.wait(10)
    agenttrace.shutdown()

    assert seen == {"had_context": False, "status": 200}
    document = json.loads((tmp_path / "last.json").read_text())
    (root,) = [s for s in document["spans"] if s["parent_id"] is None]
    (client_span,) = [s for s in document["spans"] if s["kind"] == "CLIENT"]
    # One span per call: opentelemetry-instrumentation-requests' own, under the run, enriched.
    assert client_span["parent_id"] == root["span_id"]
    assert client_span["attributes"]["http.method"] == "POST"
    (event,) = http_events(tmp_path / "last.json")
    assert event["span_id"] == client_span["span_id"]


def test_requests_redirect_records_each_hop_under_the_one_requests_span(
    tmp_path: Path, server: TestServer
) -> None:
    agenttrace.init(local_dir=str(tmp_path))
    assert requests.get(server.url + "/redirect").status_code == 200
    agenttrace.shutdown()
    events = http_events(tmp_path / "last.json")
    assert [e["response"]["status"] for e in events] == [302, 200]
    assert len({e["span_id"] for e in events}) == 2


@pytest.mark.parametrize("client_name", CLIENTS)
def test_a_divergent_call_raises_replay_divergence_through_the_client(
    tmp_path: Path, server: TestServer, client_name: str
) -> None:
    client = CLIENTS[client_name]
    record(tmp_path, lambda: client.send("POST", server.url + "/json", json={"city": "Paris"}))
    server.stop()
    agenttrace.init(
        mode="replay",
        governance_level="governance",
        replay_events=str(tmp_path / "last.json"),
        local_dir=str(tmp_path),
    )
    with pytest.raises(agenttrace.ReplayDivergence, match="Paris"):
        client.send("POST", server.url + "/json", json={"city": "Berlin"})


def test_an_internal_error_is_logged_never_raised(
    tmp_path: Path, server: TestServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("agenttrace bug")

    monkeypatch.setattr(http_client, "report_response", broken)
    monkeypatch.setattr(urllib3_instrumentor._BodyTee, "adopt", broken)
    agenttrace.init(local_dir=str(tmp_path))
    with urllib.request.urlopen(server.url + "/binary") as r:
        assert r.read() == BINARY
    assert requests.get(server.url + "/binary").content == BINARY
    agenttrace.shutdown()
    assert [r.name for r in caplog.records if "agenttrace bug" in str(r.exc_info)] == [
        "agenttrace",
        "agenttrace",
    ]


def test_uploads_are_captured_and_sent_unchanged(tmp_path: Path, server: TestServer) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"from a file")

    def send_all() -> list[Any]:
        with upload.open("rb") as fh:
            by_file = requests.post(server.url + "/upload", data=fh).json()
        by_generator = requests.post(server.url + "/upload", data=iter([b"gen", b"erated"])).json()
        pool = urllib3.PoolManager()
        with upload.open("rb") as fh:
            by_urllib3 = pool.request("POST", server.url + "/upload", body=fh).json()
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        with upload.open("rb") as fh:
            conn.request("POST", "/upload", body=fh)
            by_http_client = json.loads(conn.getresponse().read())
        conn.close()
        return [by_file, by_generator, by_urllib3, by_http_client]

    recorded, events = record(tmp_path, send_all)
    assert server.bodies == [b"from a file", b"generated", b"from a file", b"from a file"]
    assert [e["request"]["body"] for e in events] == [
        {"text": "from a file"},
        {"text": "generated"},
        {"text": "from a file"},
        {"text": "from a file"},
    ]
    server.stop()
    replayed, _ = replay(tmp_path, send_all)
    assert replayed == recorded


def test_an_abandoned_stream_records_what_was_read(tmp_path: Path, server: TestServer) -> None:
    def first_line_only() -> bytes:
        with requests.get(server.url + "/sse", stream=True) as r:
            return next(r.iter_lines())

    recorded, (event,) = record(tmp_path, first_line_only)
    server.sse_release.set()
    assert recorded == SSE_EVENTS[0].strip()
    assert [c["text"] for c in event["response"]["chunks"]] == [SSE_EVENTS[0].decode()]
    server.stop()
    replayed, _ = replay(tmp_path, first_line_only)
    assert replayed == recorded


def test_http_client_keep_alive_connection(tmp_path: Path, server: TestServer) -> None:
    def two_calls() -> list[Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        out = []
        for path in ("/binary", "/missing"):
            conn.request("GET", path, headers={"X-Test": "1"})
            response = conn.getresponse()
            out.append((response.status, response.reason, response.getheaders(), response.read()))
        conn.close()
        return out

    recorded, events = record(tmp_path, two_calls)
    assert [e["request"]["url"] for e in events] == [
        server.url + "/binary",
        server.url + "/missing",
    ]
    assert ["X-Test", "1"] in events[0]["request"]["headers"]
    server.stop()
    replayed, _ = replay(tmp_path, two_calls)
    assert replayed == recorded


def test_https_replays_from_events_alone_with_no_network(tmp_path: Path) -> None:
    """No TLS, no DNS, no socket: the pool, connection and handler never reach the network."""

    def recorded(seq: int) -> dict[str, Any]:
        response = {
            "status": 200,
            "reason": "OK",
            "headers": [
                ["Content-Type", "application/json"],
                ["Content-Encoding", "gzip"],
                ["Transfer-Encoding", "chunked"],
            ],
            "chunks": [{"at_ms": 1.0, "text": '{"items": '}, {"at_ms": 2.0, "text": "[1, 2]}"}],
        }
        request = {"method": "GET", "url": "https://api.example.test/v1/items?b=2&a=1"}
        return {
            "seq": seq,
            "kind": "http",
            "request": {**request, "body": None},
            "response": response,
        }

    agenttrace.init(
        mode="replay",
        governance_level="governance",
        replay_events=[recorded(seq) for seq in (1, 2, 3, 4)],
        local_dir=str(tmp_path),
    )
    url = "https://api.example.test/v1/items?a=1&b=2"
    assert requests.get(url).json() == {"items": [1, 2]}
    assert urllib3.request("GET", url).json() == {"items": [1, 2]}
    with urllib.request.urlopen(url) as r:  # urllib does not decode gzip
        assert json.loads(gzip.decompress(r.read())) == {"items": [1, 2]}
    conn = http.client.HTTPSConnection("api.example.test")
    conn.request("GET", "/v1/items?a=1&b=2")
    assert json.loads(gzip.decompress(conn.getresponse().read())) == {"items": [1, 2]}
    session = _session.current()
    assert session is not None and session.gate is not None
    assert session.violations == []
    agenttrace.shutdown()
    assert len(http_events(tmp_path / "replays" / "last.json")) == 4
