"""The backend exporter against a real `agenttrace serve`, behind a gate that can fail on demand.

The gate stands where the backend would: it passes requests through to the real server, or
answers 503, stalls, drops the connection after the server committed, or is not there at all.
Whatever it does, every span must end up in the server exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from agenttrace.exporters.backend import BackendSpanProcessor, Tuning, backend_processor
from agenttrace.exporters.spool import Spool
from conftest import agenttrace_serve, clean_env, free_port
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from agenttrace._config import resolve

KEY = "at_test_exporter_0123456789abcdefghijklmn"
WRONG_KEY = "at_test_revoked_99999999999999999999999"
FAST = {
    "export_timeout": 2.0,
    "schedule_delay": 30.0,  # one batch per run: sent by force_flush() or shutdown()
    "initial_backoff": 0.05,
    "retry_window": 1.0,
    "retry_window_at_exit": 0.3,
    "request_timeout": 5.0,
    "cooldown": 0.2,
}
# Exit must never wait on a dead backend beyond the export timeout (plus process scheduling).
SLACK = 1.5


# -- the real server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with agenttrace_serve(
        tmp_path_factory.mktemp("server"), "--api-key", KEY, "--max-request-mb", "1", db_name="t.db"
    ) as served:
        yield served.url


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def stored_trace(server: str, trace_id: str, key: str = KEY) -> dict[str, Any] | None:
    response = requests.get(
        f"{server}/api/v1/traces/{trace_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    return response.json() if response.status_code == 200 else None


def span_count(server: str, trace_id: str) -> int:
    listing = requests.get(
        f"{server}/api/v1/traces",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
        params={"limit": 1000},
    ).json()
    return next((t["span_count"] for t in listing["traces"] if t["trace_id"] == trace_id), 0)


# -- the gate ------------------------------------------------------------------------------------


class Gate(ThreadingHTTPServer):
    """modes: pass, 503, slow (stall until released, then pass), drop_once (commit, then hang up)."""

    daemon_threads = True

    def __init__(
        self, port: int, upstream: str, mode: str = "pass", retry_after: str | None = "0"
    ) -> None:
        self.upstream = upstream
        self.mode = mode
        self.retry_after = retry_after
        self.attempts: list[float] = []
        self.release = threading.Event()
        super().__init__(("127.0.0.1", port), _GateHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _GateHandler(BaseHTTPRequestHandler):
    server: Gate

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        gate = self.server
        gate.attempts.append(time.monotonic())
        mode = gate.mode
        if mode == "503":
            self.send_response(503)
            if gate.retry_after is not None:
                self.send_header("Retry-After", gate.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "503_once":
            gate.mode = "pass"
            self.send_response(503)
            self.send_header("Retry-After", gate.retry_after or "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "slow":
            gate.release.wait(60)
        answer = requests.post(
            gate.upstream + self.path,
            data=body,
            headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
            timeout=30,
        )
        if mode == "drop_once":
            gate.mode = "pass"
            self.close_connection = True
            return  # the server committed; the client never hears so
        self.send_response(answer.status_code)
        self.send_header(
            "Content-Type", answer.headers.get("content-type", "application/octet-stream")
        )
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


@pytest.fixture
def gate(server: str) -> Iterator[Gate]:
    g = Gate(free_port(), server)
    try:
        yield g
    finally:
        g.stop()


# -- recording spans -----------------------------------------------------------------------------


def processor_for(url: str, spool_dir: Path, key: str = KEY, **tuning: Any) -> BackendSpanProcessor:
    spool = Spool(spool_dir, url, key, 64 * 1024 * 1024)
    return BackendSpanProcessor(url, key, spool, Tuning(**{**FAST, **tuning}))


def record_run(
    provider: TracerProvider, name: str = "agent", calls: int = 3, payload: str = ""
) -> str:
    """One run shaped like the recorder's: root with run facts, a step, CLIENT spans with events."""
    tracer = provider.get_tracer("test")
    run_attributes = {"agenttrace.run.name": name, "agenttrace.run": json.dumps({"seed": 1})}
    with (
        tracer.start_as_current_span(name, attributes=run_attributes) as root,
        tracer.start_as_current_span("Planning", attributes={"agenttrace.step.type": "llm"}),
    ):
        for seq in range(1, calls + 1):
            with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as span:
                event = {
                    "seq": seq,
                    "kind": "http",
                    "step": "Planning",
                    "request": {
                        "method": "POST",
                        "url": "https://api.openai.com/v1/chat/completions",
                    },
                    "response": {"status": 200, "body": {"text": f"answer {seq} {payload}"}},
                    "duration_ms": 1.0,
                    "redacted": [],
                }
                span.set_attribute("agenttrace.event", json.dumps(event))
    return format(root.get_span_context().trace_id, "032x")


def run_with(processor: BackendSpanProcessor, **kwargs: Any) -> str:
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return record_run(provider, **kwargs)


def timed_shutdown(processor: BackendSpanProcessor) -> float:
    started = time.monotonic()
    processor.shutdown()
    return time.monotonic() - started


def flush_cli(
    url: str, spool_dir: Path, key: str = KEY, *args: str
) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        {
            "AGENTTRACE_API_URL": url,
            "AGENTTRACE_API_KEY": key,
            "AGENTTRACE_SPOOL_DIR": str(spool_dir),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "agenttrace.cli", "flush", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- tests ---------------------------------------------------------------------------------------


def test_delivers_a_run_through_backend_processor(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTTRACE_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("AGENTTRACE_EXPORT_TIMEOUT", "3")
    processor = backend_processor(resolve({"api_key": KEY, "api_url": server}))
    assert processor.tuning.export_timeout == 3
    trace_id = run_with(processor, name="delivered", calls=4)
    processor.shutdown()

    document = stored_trace(server, trace_id)
    assert document is not None
    assert document["run"]["name"] == "delivered"
    assert [e["seq"] for e in document["events"]] == [1, 2, 3, 4]
    assert processor.spool.pending() == []


def test_a_dead_backend_costs_at_most_the_export_timeout_and_flush_delivers_later(
    server: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}"
    processor = processor_for(url, tmp_path)
    trace_id = run_with(processor, name="offline", calls=5)
    assert timed_shutdown(processor) < FAST["export_timeout"] + SLACK
    assert sum(e.spans for e in processor.spool.pending()) == 7

    gate = Gate(port, server)  # the backend comes back
    try:
        result = flush_cli(url, tmp_path)
    finally:
        gate.stop()
    assert result.returncode == 0, result.stderr
    assert "delivered 1 batches (7 spans)" in result.stderr, result.stderr
    assert span_count(server, trace_id) == 7
    assert len(stored_trace(server, trace_id)["events"]) == 5
    assert processor.spool.pending() == []


def test_503_is_retried_then_spooled_and_the_next_process_delivers_it(
    server: str, gate: Gate, tmp_path: Path
) -> None:
    gate.mode = "503"
    processor = processor_for(gate.url, tmp_path)
    trace_id = run_with(processor, name="unavailable")
    assert timed_shutdown(processor) < FAST["export_timeout"] + SLACK
    assert len(gate.attempts) >= 2  # retried before giving up
    assert processor.spool.pending()
    assert span_count(server, trace_id) == 0

    gate.mode = "pass"
    later = processor_for(gate.url, tmp_path)  # the next agent process, same spool
    try:
        wait_for(lambda: span_count(server, trace_id) == 5, "the spooled run to arrive")
        wait_for(lambda: not later.spool.pending(), "the spool to empty")
    finally:
        later.shutdown()


def test_retry_after_is_honoured(server: str, gate: Gate, tmp_path: Path) -> None:
    gate.mode, gate.retry_after = "503_once", "1"
    processor = processor_for(gate.url, tmp_path, retry_window=10.0)
    trace_id = run_with(processor)
    assert processor.force_flush(20_000)
    processor.shutdown()
    assert len(gate.attempts) == 2
    assert gate.attempts[1] - gate.attempts[0] >= 0.9
    assert span_count(server, trace_id) == 5
    assert processor.spool.pending() == []


def test_a_slow_backend_does_not_hold_exit_and_nothing_is_duplicated(
    server: str, gate: Gate, tmp_path: Path
) -> None:
    gate.mode = "slow"
    processor = processor_for(gate.url, tmp_path, export_timeout=1.0)
    trace_id = run_with(processor, name="slow")
    assert timed_shutdown(processor) < 1.0 + SLACK
    assert processor.spool.pending()

    gate.release.set()  # the stalled request now reaches the server too
    gate.mode = "pass"
    result = flush_cli(gate.url, tmp_path)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: span_count(server, trace_id) == 5, "the run to arrive")
    document = stored_trace(server, trace_id)
    assert len(document["spans"]) == 5 and len(document["events"]) == 3


def test_a_lost_acknowledgement_is_retried_without_duplicating_spans(
    server: str, gate: Gate, tmp_path: Path
) -> None:
    gate.mode = "drop_once"
    processor = processor_for(gate.url, tmp_path, retry_window=10.0)
    trace_id = run_with(processor, calls=6)
    assert processor.force_flush(20_000)
    processor.shutdown()
    assert len(gate.attempts) == 2
    assert span_count(server, trace_id) == 8
    assert len(stored_trace(server, trace_id)["spans"]) == 8


def test_a_rejected_key_prints_one_line_and_stops_sending(
    server: str, gate: Gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    processor = processor_for(gate.url, tmp_path, key=WRONG_KEY)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace_ids = []
    for i in range(3):
        trace_ids.append(record_run(provider, name=f"run{i}"))
        assert processor.force_flush(10_000)
    processor.shutdown()

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "at_test_…" in lines[0] and "401" in lines[0]
    assert WRONG_KEY not in lines[0] and WRONG_KEY[8:] not in lines[0]
    assert len(gate.attempts) == 1  # no retry storm
    assert sum(e.spans for e in processor.spool.pending()) == 15

    # With the right key, `flush --all` sends what was spooled under the revoked one.
    plain = flush_cli(gate.url, tmp_path)
    assert "wait for key at_test_…" in plain.stderr and WRONG_KEY not in plain.stderr
    assert flush_cli(gate.url, tmp_path, KEY, "--all").returncode == 0
    for trace_id in trace_ids:
        assert span_count(server, trace_id) == 5


def test_a_batch_over_the_server_limit_is_split(server: str, gate: Gate, tmp_path: Path) -> None:
    processor = processor_for(gate.url, tmp_path)
    big = "x" * 300_000  # 8 spans carry ~1.8 MB; the server takes 1 MiB per request
    trace_id = run_with(processor, calls=6, payload=big)
    processor.shutdown()
    assert len(gate.attempts) >= 3  # the whole batch (413), then its halves
    document = stored_trace(server, trace_id)
    assert document is not None and len(document["spans"]) == 8
    assert [e["seq"] for e in document["events"]] == [1, 2, 3, 4, 5, 6]
    assert processor.spool.pending() == []


def test_the_spool_is_bounded_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(tmp_path, "http://backend", KEY, max_bytes=1000)
    assert spool.write(b"a" * 600, 1)
    assert not spool.write(b"b" * 600, 2)
    assert not spool.write(b"c" * 600, 3)
    assert [e.spans for e in spool.pending()] == [1]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "full" in warnings[0] and "AGENTTRACE_SPOOL_MAX_MB" in warnings[0]
    # Nothing on disk names the key.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()


def test_export_traffic_is_never_recorded_as_agent_io(server: str, tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    processor = processor_for(server, tmp_path)
    provider.add_span_processor(processor)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    try:
        trace_id = record_run(provider, name="quiet")
        assert processor.force_flush(10_000)
        processor.shutdown()
    finally:
        RequestsInstrumentor().uninstrument()
    assert span_count(server, trace_id) == 5
    assert sorted({s.name for s in memory.get_finished_spans()}) == ["POST", "Planning", "quiet"]
    assert all(
        s.kind != SpanKind.CLIENT or s.attributes.get("agenttrace.event")
        for s in memory.get_finished_spans()
    )


def test_a_url_that_is_not_a_backend_is_reported_once_and_nothing_is_dropped(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    processor = processor_for(server + "/not-here", tmp_path)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for i in range(2):
        record_run(provider, name=f"lost{i}")
        assert processor.force_flush(10_000)
    processor.shutdown()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "AGENTTRACE_API_URL" in lines[0] and "404" in lines[0]
    assert sum(e.spans for e in processor.spool.pending()) == 10


def test_an_unwritable_spool_warns_once_and_never_breaks_the_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be")
    url = f"http://127.0.0.1:{free_port()}"
    processor = processor_for(url, blocker)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for i in range(2):
        record_run(provider, name=f"nowhere{i}")
        processor.force_flush(10_000)
    assert timed_shutdown(processor) < FAST["export_timeout"] + SLACK
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "cannot write to the spool" in lines[0]


def test_a_stalled_backend_never_blocks_the_agent_thread(
    gate: Gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.mode = "slow"
    processor = processor_for(gate.url, tmp_path, max_queue=200, batch_size=50, schedule_delay=0.01)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for i in range(2000):  # the worker is stuck in its first request all along
        with tracer.start_as_current_span(f"span{i}"):
            pass
    assert timed_shutdown(processor) < FAST["export_timeout"] + SLACK
    spooled = sum(e.spans for e in processor.spool.pending())
    warnings = [line for line in capsys.readouterr().err.splitlines() if "queue was full" in line]
    dropped = int(warnings[0].split("agenttrace: ")[1].split()[0]) if warnings else 0
    assert len(warnings) <= 1
    assert spooled + dropped == 2000
    assert spooled >= 200
