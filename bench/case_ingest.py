"""Case 7 (ingest): how many spans per second ``agenttrace serve`` stores, per database.

Params: variant (sqlite, postgres, postgres-2), db (a PostgreSQL URL, or null for SQLite in
the workdir), missing (why PostgreSQL is unavailable, if it is), replicas, spans, batch,
clients, workdir.

The worker starts the replicas itself (fresh database each job), then ``clients`` threads post
pre-built OTLP protobuf+gzip batches of ``batch`` spans (the SDK exporter's batch size) to the
replicas in turn, over keep-alive connections. Only the posting is timed; the span count the
server then reports is checked against what was sent.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
import urllib.request
from contextlib import ExitStack

from harness import PYTHON, background, emit, free_port, params
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

KEY = "at_test_bench_ingest_0000000000"
PER_TRACE = 1000


def batches(first: int, total: int, size: int) -> list[bytes]:
    """OTLP requests of ``size`` CLIENT spans (numbered from ``first``) carrying ~1 kB events,
    gzip-compressed, ``PER_TRACE`` spans to a trace."""
    from case_export import event_json

    out = []
    for start in range(first, first + total, size):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(start, min(start + size, first + total)):
            span = scope.spans.add(
                trace_id=(i // PER_TRACE + 1).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=(i // PER_TRACE * PER_TRACE + 1).to_bytes(8, "big"),
                name="POST",
                kind=3,
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_000_100_000 + i,
            )
            span.attributes.append(
                KeyValue(key="agenttrace.event", value=AnyValue(string_value=event_json(i)))
            )
            span.attributes.append(KeyValue(key="agenttrace.seq", value=AnyValue(int_value=i)))
        out.append(gzip.compress(request.SerializeToString()))
    return out


def start_replica(stack: ExitStack, db: str, workdir: str) -> str:
    port = free_port()
    command = [PYTHON, "-m", "agenttrace.cli", "serve", "--port", str(port), "--db", db]
    command += ["--api-key", KEY, "--log-level", "warning"]
    stack.enter_context(background(command, cwd=workdir, ready="agenttrace serve:"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # the line comes before the port is bound
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return url
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def post_all(urls: list[str], bodies: list[bytes], clients: int) -> float:
    """Post every body, ``clients`` at a time, to the replicas in turn; returns seconds taken."""
    import requests

    failures: list[str] = []

    def client(index: int) -> None:
        with requests.Session() as session:
            for n in range(index, len(bodies), clients):
                response = session.post(
                    urls[n % len(urls)] + "/v1/traces",
                    data=bodies[n],
                    headers={
                        "Authorization": f"Bearer {KEY}",
                        "Content-Type": "application/x-protobuf",
                        "Content-Encoding": "gzip",
                    },
                    timeout=120,
                )
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} posts failed, first: {failures[0]}")
    return elapsed


def stored_spans(url: str) -> int:
    request = urllib.request.Request(
        url + "/api/v1/traces?limit=1000", headers={"Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return sum(t["span_count"] for t in json.load(response)["traces"])


def main() -> None:
    p = params()
    if p.get("missing"):
        emit({"skipped": p["missing"]})
        return
    db = p["db"] or os.path.join(p["workdir"], "ingest.db")
    n, size = p["spans"], p["batch"]
    bodies = batches(0, n, size)
    warmup = batches(n, PER_TRACE, size)  # traces of their own: the timed spans are all new
    with ExitStack() as stack:
        urls = [start_replica(stack, db, p["workdir"]) for _ in range(p["replicas"])]
        post_all(urls, warmup, len(urls))  # connections, pools and caches warm
        elapsed = post_all(urls, bodies, p["clients"])
        stored = stored_spans(urls[-1])
    emit(
        {
            "spans_per_s": n / elapsed,
            "seconds": elapsed,
            "server_spans": stored,
            "made": n + PER_TRACE,
        }
    )


if __name__ == "__main__":
    main()
