"""Hostile clients cannot degrade `agenttrace serve` for others: bounded decode time and memory,
depth limits, connection timeouts and caps, and 400 (never 500) for anything malformed.

Attackers connect from 127.0.0.2 and the well-behaved client (the health probe) from 127.0.0.1,
as they would from different machines: a per-address cap must not lock out everyone else.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from _backend import KEY_A, agent_spans, get, post, protobuf, trace_id_of
from conftest import ServeProcess as Server
from conftest import agenttrace_serve
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

from agenttrace.server.inflate import Inflater

ATTACKER = "127.0.0.2"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Default limits: what a user who passes no flag gets."""
    with agenttrace_serve(tmp_path_factory.mktemp("server"), "--api-key", KEY_A) as srv:
        yield srv


class HealthProbe:
    """GETs /healthz from 127.0.0.1 every 50 ms in a thread; ``worst`` is the slowest answer."""

    def __init__(self, server: Server) -> None:
        self.url = server.url + "/healthz"
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    status = session.get(self.url, timeout=5).status_code
                    if status != 200:
                        self.failures.append(f"HTTP {status}")
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - began)
                self._stop.wait(0.05)

    @property
    def worst(self) -> float:
        return max(self.latencies)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.failures == []
        assert self.latencies


def connect(server: Server, source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30, source_address=(source, 0)
    )
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Wait up to ``timeout`` s for the server to close; (closed, what it sent before that)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


# -- decoding -------------------------------------------------------------------------------------


def test_a_160k_member_gzip_body_is_refused_at_once_while_healthz_answers(server: Server) -> None:
    body = gzip.compress(b"") * 160_000
    assert 3_000_000 < len(body) < 3_500_000  # the payload of the report: 3.2 MB
    with HealthProbe(server) as probe:
        began = time.monotonic()
        response = post(server, body, **{"Content-Encoding": "gzip"})
        elapsed = time.monotonic() - began
        time.sleep(0.2)
    print(f"refused in {elapsed:.3f} s; slowest /healthz {probe.worst:.3f} s")
    assert response.status_code == 400
    assert "more than 64 members (the limit)" in response.json()["error"]["message"]
    assert elapsed <= 2.0
    assert probe.worst <= 0.5


def test_many_gzip_members_decode_in_linear_time() -> None:
    # Without the member limit, the same body decodes, as fast as one member per µs or so.
    body = gzip.compress(b"") * 160_000 + gzip.compress(b"end")
    inflater = Inflater("gzip", MIB, max_members=1_000_000)
    began = time.monotonic()
    for i in range(0, len(body), 65536):
        inflater.feed(body[i : i + 65536])
    assert inflater.finish() == b"end"
    assert time.monotonic() - began <= 2.0


def test_a_few_gzip_members_are_one_request(server: Server) -> None:
    first, second = agent_spans("member_one"), agent_spans("member_two")
    # Concatenated protobuf messages merge: two members make one request with both runs.
    body = gzip.compress(protobuf(first)) + gzip.compress(protobuf(second))
    assert post(server, body, **{"Content-Encoding": "gzip"}).status_code == 200
    for spans in (first, second):
        assert get(server, f"/api/v1/traces/{trace_id_of(spans)}").status_code == 200


def nested_kvlist(depth: int) -> AnyValue:
    value = AnyValue(string_value="bottom")
    for _ in range(depth):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


# Deeper than protobuf lets a message be built: the payloads are written out by hand.


def deep_json_export(depth: int) -> bytes:
    value = '{"stringValue": "bottom"}'
    value = '{"kvlistValue": {"values": [{"key": "k", "value": ' * depth + value
    value += "}]}}" * depth
    span = f'{{"traceId": "{"ab" * 16}", "spanId": "{"cd" * 8}", "name": "deep", '
    span += f'"attributes": [{{"key": "deep", "value": {value}}}]}}'
    return f'{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{span}]}}]}}]}}'.encode()


def deep_protobuf_export(depth: int) -> bytes:
    def field(number: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    value = field(1, b"bottom")  # AnyValue.string_value
    for _ in range(depth):  # AnyValue.kvlist_value -> KeyValueList.values -> KeyValue
        value = field(6, field(1, field(1, b"k") + field(2, value)))
    span = field(1, bytes.fromhex("ab" * 16)) + field(2, bytes.fromhex("cd" * 8))
    span += field(5, b"deep") + field(9, field(1, b"deep") + field(2, value))
    return field(1, field(2, field(2, span)))  # request -> resource_spans -> scope_spans -> span


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def as_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    from google.protobuf import json_format

    data = json_format.MessageToDict(request)
    for resource in data["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


def test_deep_nesting_is_400_naming_the_limit(server: Server) -> None:
    json_headers = {"Content-Type": "application/json"}
    deep_json = b'{"a":' * 5000 + b"1" + b"}" * 5000
    for body, headers, message in [
        (deep_json, json_headers, "nests deeper than 160 levels (the limit)"),
        (
            b'{"x": ' + b"[" * 200 + b"]" * 200 + b"}",
            json_headers,
            "nests deeper than 160 levels (the limit)",
        ),
        (deep_json_export(300), json_headers, "nests deeper than 160 levels (the limit)"),
        (deep_json_export(35), json_headers, "Max recursion depth is 100"),
        (deep_protobuf_export(35), {}, "MaxDepth"),
    ]:
        response = post(server, body, **headers)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]["message"]
    assert post(server, deep_json_export(30), **json_headers).status_code == 200
    assert post(server, deep_protobuf_export(30)).status_code == 200


def odd_but_valid() -> tuple[ExportTraceServiceRequest, str]:
    """Values that reach the database in unusual shapes: NUL in text, NaN, a structured run name."""
    request = ExportTraceServiceRequest.FromString(protobuf(agent_spans("odd")))
    spans = request.resource_spans[0].scope_spans[0].spans
    root = next(s for s in spans if not s.parent_span_id)
    root.name = "nul\x00in name"
    root.status.message = "nul\x00in message"
    for kv in root.attributes:
        if kv.key == "agenttrace.run.name":
            kv.value.CopyFrom(nested_kvlist(2))
    root.attributes.append(KeyValue(key="nan", value=AnyValue(double_value=float("nan"))))
    root.attributes.append(KeyValue(key="inf", value=AnyValue(double_value=float("-inf"))))
    return request, root.trace_id.hex()


def out_of_range_times() -> bytes:
    request = ExportTraceServiceRequest.FromString(protobuf(agent_spans("far_future")))
    request.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano = 2**64 - 1
    return request.SerializeToString()


MALFORMED = [
    (b"\xff\xff\xff\xff not protobuf", {}),
    (protobuf(agent_spans())[:-7], {}),
    (b'{"resourceSpans": "\xff"}', {"Content-Type": "application/json"}),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\\ud800"}]}]}]}', "json"),
    (b'{"resourceSpans": 5}', "json"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}', "json"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": ["x"]}]}]}]}', "json"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "1e99"}]}]}]}', "json"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [3]}]}]}]}', "json"),
    (gzip.compress(protobuf(agent_spans())) + b"trailing junk", {"Content-Encoding": "gzip"}),
    (zlib.compress(b"x")[:-3], {"Content-Encoding": "deflate"}),
    (b"\x78\x9c garbage", {"Content-Encoding": "deflate"}),
]


@pytest.mark.parametrize("body, headers", MALFORMED)
def test_malformed_payloads_are_400_never_500(server: Server, body: bytes, headers) -> None:
    if headers == "json":
        headers = {"Content-Type": "application/json"}
    response = post(server, body, **headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


def test_odd_values_are_stored_and_read_back(server: Server) -> None:
    request, trace_id = odd_but_valid()
    assert post(server, request.SerializeToString()).status_code == 200
    document = get(server, f"/api/v1/traces/{trace_id}").json()
    root = next(s for s in document["spans"] if s["parent_id"] is None)
    assert root["name"] == "nul\ufffdin name"
    assert root["attributes"]["nan"] == "NaN" and root["attributes"]["inf"] == "-Infinity"
    listed = get(server, "/api/v1/traces").json()["traces"]
    summary = next(t for t in listed if t["trace_id"] == trace_id)
    assert summary["name"].startswith("{") and summary["error"] is None

    json_body = as_otlp_json(odd_but_valid()[0])
    assert post(server, json_body, **{"Content-Type": "application/json"}).status_code == 200

    # A span whose time no 64-bit column can hold is refused alone (OTLP partial success).
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    response = post(server, out_of_range_times())
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 1 and "at most" in partial.error_message
    assert server.proc.poll() is None


# -- connections ----------------------------------------------------------------------------------


def test_slowloris_connections_are_closed_while_healthz_stays_fast(server: Server) -> None:
    trickling = [connect(server) for _ in range(40)]
    silent = [connect(server) for _ in range(10)]  # connect, then never send a byte
    began = time.monotonic()
    for sock in trickling:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle() -> None:  # one more header byte per connection every half second
        while not stop.wait(0.5):
            for sock in trickling:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")

    feeder = threading.Thread(target=trickle, daemon=True)
    with HealthProbe(server) as probe:
        feeder.start()
        with ThreadPoolExecutor(50) as pool:
            outcomes = list(pool.map(lambda s: closed_by_server(s, 20), trickling + silent))
        closed_after = time.monotonic() - began
        stop.set()
    feeder.join(5)
    for sock in trickling + silent:
        sock.close()
    print(f"all closed after {closed_after:.1f} s; slowest /healthz {probe.worst:.3f} s")
    assert all(closed for closed, _ in outcomes)
    assert closed_after <= 15.0
    assert all(sent.startswith(b"HTTP/1.1 408 ") for _, sent in outcomes)
    assert probe.worst <= 0.5


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Tight limits, so that each one can be seen to act within a test's patience."""
    with agenttrace_serve(
        tmp_path_factory.mktemp("strict"),
        "--api-key",
        KEY_A,
        "--max-connections-per-client",
        "4",
        "--body-timeout",
        "1",
        "--header-timeout",
        "2",
        "--idle-timeout",
        "1",
    ) as srv:
        yield srv


def test_one_address_cannot_take_every_connection(strict: Server) -> None:
    held = [connect(strict) for _ in range(4)]
    one_too_many = connect(strict)
    closed, sent = closed_by_server(one_too_many, 5)
    assert closed and sent.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in sent
    assert requests.get(strict.url + "/healthz", timeout=5).status_code == 200  # 127.0.0.1
    held.pop().close()
    time.sleep(0.2)  # the server notices the close
    again = connect(strict)
    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    closed, sent = closed_by_server(again, 5)
    assert sent.startswith(b"HTTP/1.1 200 ")
    for sock in [*held, one_too_many, again]:
        sock.close()


def test_a_body_that_trickles_is_408_and_the_connection_closed(strict: Server) -> None:
    sock = connect(strict)
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Authorization: Bearer " + KEY_A.encode() + b"\r\nContent-Length: 1000\r\n\r\n0123"
    )
    closed, sent = closed_by_server(sock, 10)
    sock.close()
    assert closed
    assert sent.startswith(b"HTTP/1.1 408 ") and b"within 1 s (the limit)" in sent


def test_keep_alive_connections_are_timed_out_when_idle_or_slow(strict: Server) -> None:
    idle = connect(strict)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    closed, sent = closed_by_server(idle, 10)  # answered, then closed after 1 s of idleness
    assert closed and sent.startswith(b"HTTP/1.1 200 ")
    slow = connect(strict)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    began = time.monotonic()
    sent = b""
    with contextlib.suppress(OSError):  # the next request's headers, a byte every 0.3 s
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: 1234567890":
            slow.sendall(bytes([byte]))
            slow.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                if not (chunk := slow.recv(65536)):
                    break
                sent += chunk
    assert sent.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in sent
    assert 1.5 < time.monotonic() - began < 5  # the 2 s header timeout, not the idle one
    for sock in (idle, slow):
        sock.close()


# -- memory ---------------------------------------------------------------------------------------


def big_json_export(trace: int, target: int = 31 * MIB) -> bytes:
    """OTLP/JSON of about ``target`` bytes: CLIENT spans carrying ~1.5 kB events, as recorded."""
    event = json.dumps({"kind": "http", "request": {"body": "q" * 900}, "response": "a" * 500})
    spans, size, i = [], 0, 0
    while size < target - 2048:
        spans.append(
            {
                "traceId": f"{trace:08x}{i // 500:024x}",
                "spanId": f"{i + 1:016x}",
                "name": "POST",
                "kind": 3,
                "startTimeUnixNano": str(1_700_000_000_000_000_000 + i),
                "endTimeUnixNano": str(1_700_000_000_000_001_000 + i),
                "attributes": [
                    {"key": "agenttrace.event", "value": {"stringValue": event}},
                    {"key": "agenttrace.seq", "value": {"intValue": str(i)}},
                ],
            }
        )
        size += len(json.dumps(spans[-1])) + 2
        i += 1
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    assert target - 4096 < len(body) <= target
    return body


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_four_concurrent_31_mib_ingests_stay_within_400_mb(tmp_path: Path) -> None:
    bodies = [big_json_export(trace) for trace in range(1, 5)]
    with agenttrace_serve(tmp_path, "--api-key", KEY_A) as srv, HealthProbe(srv) as probe:
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(
                    lambda body: requests.post(
                        srv.url + "/v1/traces",
                        data=body,
                        headers={
                            "Authorization": f"Bearer {KEY_A}",
                            "Content-Type": "application/json",
                        },
                        timeout=120,
                    ),
                    bodies,
                )
            )
        peak = peak_rss_mb(srv.proc.pid)
        stored = get(srv, "/api/v1/traces", limit=1000).json()["traces"]
    assert [r.status_code for r in responses] == [200] * 4, responses[0].text
    assert sum(t["span_count"] for t in stored) == sum(b.count(b'"spanId"') for b in bodies)
    print(f"peak RSS {peak:.0f} MB; slowest /healthz {probe.worst:.3f} s")
    assert peak <= 400
