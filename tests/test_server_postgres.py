"""Several `agenttrace serve` replicas on one real PostgreSQL database: each lists every run, a
trace whose spans arrive at different replicas is one complete (replayable) trace, keys stay
isolated, and retention deletes old traces for all of them."""

from __future__ import annotations

import contextlib
import gzip
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from _backend import KEY_A, KEY_B, agent_spans, get, post, protobuf, trace_id_of
from conftest import ServeProcess as Server
from conftest import agenttrace_serve, free_port, run_python
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_cli import AGENT, cli


@pytest.fixture(scope="module")
def database(postgres: Any) -> str:
    return postgres.database("replicas")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[list[Server]]:
    keys = ["--api-key", KEY_A, "--api-key", KEY_B]
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                agenttrace_serve(tmp_path_factory.mktemp(f"replica{i}"), *keys, db_url=database)
            )
            for i in range(2)
        ]


class SpanSplitter:
    """An OTLP/HTTP hop that deals the spans of every export out to all replicas in turn, as a
    fleet of Collectors behind a load balancer may: no two neighbouring spans reach the same
    replica. Answers 200 once every replica has stored its share."""

    def __init__(self, replicas: list[Server]) -> None:
        self.forwarded = [0] * len(replicas)
        splitter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status = 200
                for i, share in enumerate(splitter.deal(body)):
                    if not share.resource_spans:
                        continue
                    response = requests.post(
                        replicas[i].url + "/v1/traces",
                        data=gzip.compress(share.SerializeToString()),
                        headers={
                            "Authorization": self.headers["Authorization"],
                            "Content-Type": "application/x-protobuf",
                            "Content-Encoding": "gzip",
                        },
                        timeout=30,
                    )
                    status = max(status, response.status_code)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def deal(self, body: bytes) -> list[ExportTraceServiceRequest]:
        shares = [ExportTraceServiceRequest() for _ in self.forwarded]
        turn = 0
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    target = shares[turn % len(shares)].resource_spans.add()
                    target.resource.CopyFrom(resource_spans.resource)
                    scope = target.scope_spans.add()
                    scope.scope.CopyFrom(scope_spans.scope)
                    scope.spans.append(span)
                    self.forwarded[turn % len(shares)] += 1
                    turn += 1
        return shares

    def __enter__(self) -> SpanSplitter:
        import threading

        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def listed(server: Server, key: str = KEY_A, **params: Any) -> list[str]:
    return [
        t["trace_id"] for t in get(server, "/api/v1/traces", key=key, **params).json()["traces"]
    ]


# -- replicas -------------------------------------------------------------------------------------


def test_every_replica_lists_every_run_and_pages_with_the_others_cursor(
    replicas: list[Server],
) -> None:
    ids = []
    for i in range(6):
        spans = agent_spans(f"replicated{i}")
        assert post(replicas[i % 2], protobuf(spans)).status_code == 200
        ids.append(trace_id_of(spans))
    first, second = replicas
    assert set(ids) <= set(listed(first, limit=1000)) == set(listed(second, limit=1000))
    page = get(first, "/api/v1/traces", limit=2).json()
    rest = get(second, "/api/v1/traces", limit=1000, cursor=page["next_cursor"]).json()
    assert [t["trace_id"] for t in page["traces"] + rest["traces"]] == listed(first, limit=1000)


def test_a_trace_split_across_replicas_is_complete_and_replays_offline(
    replicas: list[Server], tmp_path: Path, llm_server
) -> None:
    spool = str(tmp_path / "spool")
    with SpanSplitter(replicas) as splitter:
        env = {
            "URL": llm_server.url,
            "AGENTTRACE_API_KEY": KEY_A,
            "AGENTTRACE_API_URL": splitter.url,
            "AGENTTRACE_SPOOL_DIR": spool,
            "RUN_NAME": "split_run",
        }
        recorded = run_python(AGENT, env=env, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    assert all(count > 0 for count in splitter.forwarded), splitter.forwarded

    first, second = replicas
    summary = get(second, "/api/v1/traces", limit=1).json()["traces"][0]
    assert summary["name"] == "split_run" and summary["status"] == "ok"
    assert summary["span_count"] == sum(splitter.forwarded)
    documents = [get(r, f"/api/v1/traces/{summary['trace_id']}").json() for r in replicas]
    assert documents[0] == documents[1]
    assert len(documents[0]["spans"]) == sum(splitter.forwarded)

    pull_env = {"AGENTTRACE_API_KEY": KEY_A, "AGENTTRACE_API_URL": second.url}
    pulled = cli("pull", "--last", "-o", "split.json", cwd=tmp_path, **pull_env)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads((tmp_path / "split.json").read_text()) == documents[0]
    served = llm_server.request_count
    replayed = run_python(
        AGENT,
        env={
            "URL": llm_server.url,
            "RUN_NAME": "split_run",
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(tmp_path / "split.json"),
        },
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert llm_server.request_count == served


def test_keys_stay_isolated_across_replicas(replicas: list[Server]) -> None:
    spans = agent_spans("project_a_only")
    trace_id = trace_id_of(spans)
    assert post(replicas[0], protobuf(spans), key=KEY_A).status_code == 200
    for replica in replicas:
        assert get(replica, f"/api/v1/traces/{trace_id}", key=KEY_A).status_code == 200
        assert get(replica, f"/api/v1/traces/{trace_id}", key=KEY_B).status_code == 404
        assert trace_id not in listed(replica, key=KEY_B, limit=1000)


# -- retention ------------------------------------------------------------------------------------


def age(database: str, trace_ids: list[str], days: float) -> None:
    """Make traces look last written to ``days`` ago."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "UPDATE traces SET received_at = received_at - %s WHERE trace_id = ANY(%s)",
            (days * 86400, trace_ids),
        )


def test_retention_deletes_old_traces_for_every_replica(
    replicas: list[Server], database: str, tmp_path: Path
) -> None:
    runs = [agent_spans(f"retained{i}") for i in range(3)]
    for i, spans in enumerate(runs):
        assert post(replicas[i % 2], protobuf(spans)).status_code == 200
    old, fresh = [trace_id_of(s) for s in runs[:2]], trace_id_of(runs[2])
    age(database, old, days=40)

    pruned = cli("prune", "--db", database, "--retain-days", "30", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 2 traces (8 spans)" in pruned.stderr
    for replica in replicas:
        assert fresh in listed(replica, limit=1000)
        assert not set(old) & set(listed(replica, limit=1000))
        assert get(replica, f"/api/v1/traces/{old[0]}").status_code == 404

    # A replica started with --retain-days prunes at start (then every hour).
    age(database, [fresh], days=31)
    with agenttrace_serve(
        tmp_path, "--api-key", KEY_A, "--retain-days", "30", db_url=database
    ) as third:
        deadline = time.monotonic() + 10
        while fresh in listed(third, limit=1000) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert fresh not in listed(replicas[0], limit=1000)
    assert "deleting traces after 30 days" in third.stderr


# -- errors ---------------------------------------------------------------------------------------


def test_while_the_database_is_down_ingest_is_503_and_then_recovers(
    private_postgres: Any, tmp_path: Path
) -> None:
    url = private_postgres.database()
    before, during = agent_spans("before_outage"), agent_spans("during_outage")
    with agenttrace_serve(tmp_path, "--api-key", KEY_A, db_url=url) as srv:
        assert post(srv, protobuf(before)).status_code == 200
        private_postgres.stop()
        with ThreadPoolExecutor(2) as pool:
            ingest = pool.submit(post, srv, protobuf(during))
            health = pool.submit(requests.get, srv.url + "/healthz", timeout=30)
            refused, unhealthy = ingest.result(), health.result()
        # 503 with Retry-After: the exporter retries later instead of dropping the batch.
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "the database is unavailable" in refused.json()["error"]["message"]
        assert unhealthy.status_code == 503
        private_postgres.start()
        deadline = time.monotonic() + 30
        while post(srv, protobuf(during)).status_code != 200:
            assert time.monotonic() < deadline, "ingest did not recover"
            time.sleep(0.2)
        assert {trace_id_of(before), trace_id_of(during)} <= set(listed(srv))
        assert srv.healthy()


def test_an_unreachable_database_is_one_line_naming_the_problem(tmp_path: Path) -> None:
    url = f"postgresql://agenttrace:s3cret-pw@127.0.0.1:{free_port()}/agenttrace"
    for command in (["serve", "--api-key", KEY_A], ["prune", "--retain-days", "30"]):
        result = cli(*command, "--db", url, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "cannot connect to PostgreSQL at postgresql://agenttrace:***@" in result.stderr
        assert "Connection refused" in result.stderr and "check the --db URL" in result.stderr
        assert "s3cret-pw" not in result.stderr


def test_postgres_replicas_need_their_keys_given(tmp_path: Path) -> None:
    result = cli("serve", "--db", "postgresql://agenttrace@127.0.0.1:1/x", cwd=tmp_path)
    assert result.returncode == 2
    assert "pass --api-key or --api-key-file" in result.stderr
