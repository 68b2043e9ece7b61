"""The backend (`agenttrace serve`) as a real process: ingest, auth, the trace API, robustness."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from _backend import KEY_A, KEY_B, agent_spans, get, post, protobuf, trace_id_of
from conftest import ServeProcess as Server
from conftest import agenttrace_serve
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

# -- a real server process -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with agenttrace_serve(
        tmp_path_factory.mktemp("server"),
        "--api-key",
        KEY_A,
        "--api-key",
        KEY_B,
        "--max-request-mb",
        "1",
    ) as srv:
        yield srv


# -- tests ----------------------------------------------------------------------------------------


def test_healthz(server: Server) -> None:
    response = requests.get(server.url + "/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ingest_then_read_the_document_ready_for_replay(server: Server) -> None:
    spans = agent_spans()
    response = post(server, gzip.compress(protobuf(spans)), **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"

    trace_id = trace_id_of(spans)
    document = get(server, f"/api/v1/traces/{trace_id}").json()
    assert document["format"] == "agenttrace.trace/1"
    assert document["trace_id"] == trace_id
    assert document["run"]["name"] == "checkout_agent"
    assert document["run"]["status"] == "ok"
    assert document["run"]["seed"] == 42 and document["run"]["hash_seed"] == "0"
    assert [e["seq"] for e in document["events"]] == [0, 1, 2]
    assert document["events"][1]["request"]["body"]["json"]["messages"][0]["content"] == "q1"
    assert len(document["spans"]) == 4

    events = get(server, f"/api/v1/traces/{trace_id}/events").json()
    assert events == {"trace_id": trace_id, "events": document["events"]}

    listed = get(server, "/api/v1/traces").json()["traces"]
    summary = next(t for t in listed if t["trace_id"] == trace_id)
    assert summary["name"] == "checkout_agent"
    assert summary["status"] == "ok"
    assert summary["span_count"] == 4 and summary["event_count"] == 3
    assert summary["started_at"] == document["run"]["started_at"]


def test_each_key_is_a_project(server: Server) -> None:
    spans = agent_spans("project_a_run")
    assert post(server, protobuf(spans), key=KEY_A).status_code == 200
    trace_id = trace_id_of(spans)

    assert get(server, f"/api/v1/traces/{trace_id}", key=KEY_A).status_code == 200
    other = get(server, f"/api/v1/traces/{trace_id}", key=KEY_B)
    assert other.status_code == 404
    assert get(server, f"/api/v1/traces/{trace_id}/events", key=KEY_B).status_code == 404
    assert trace_id not in [
        t["trace_id"] for t in get(server, "/api/v1/traces", key=KEY_B).json()["traces"]
    ]


@pytest.mark.parametrize("key", [None, "at_test_not_a_key_of_this_server_000000", "Basic abc"])
def test_missing_or_unknown_key_is_401(server: Server, key: str | None) -> None:
    body = protobuf(agent_spans())
    for response in (
        post(server, body, key=key),
        get(server, "/api/v1/traces", key=key),
        get(server, "/api/v1/traces/" + "a" * 32, key=key),
    ):
        assert response.status_code == 401
        assert "error" in response.json()
        assert response.headers["www-authenticate"].startswith("Bearer")
        if key:
            assert key not in response.text


def test_garbage_is_400_and_the_server_keeps_serving(server: Server) -> None:
    cases = [
        (b"\xff\xff\xff\xff not protobuf", {}),
        (b"\x1f\x8b\x08 truncated gzip", {"Content-Encoding": "gzip"}),
        (b"{not json", {"Content-Type": "application/json"}),
        (b"[1, 2]", {"Content-Type": "application/json"}),
    ]
    for body, headers in cases:
        response = post(server, body, **headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["message"]
    assert post(server, b"x", **{"Content-Type": "text/plain"}).status_code == 415
    assert post(server, b"x", **{"Content-Encoding": "br"}).status_code == 415
    assert server.proc.poll() is None
    assert post(server, protobuf(agent_spans())).status_code == 200


def test_oversized_and_gzip_bombs_are_413(server: Server) -> None:
    too_big = post(server, b"\0" * (1024 * 1024 + 1))
    assert too_big.status_code == 413
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    assert len(bomb) < 100_000
    assert post(server, bomb, **{"Content-Encoding": "gzip"}).status_code == 413
    assert post(server, protobuf(agent_spans())).status_code == 200


def test_batches_and_retries_assemble_one_trace_without_duplicates(server: Server) -> None:
    spans = agent_spans("pieces", calls=5)
    trace_id = trace_id_of(spans)
    first, second = spans[:3], spans[3:]
    for batch in (first, first, second, spans):  # a retried batch, then everything again
        assert post(server, protobuf(batch)).status_code == 200

    document = get(server, f"/api/v1/traces/{trace_id}").json()
    assert len(document["spans"]) == len(spans) == 7
    assert [e["seq"] for e in document["events"]] == [0, 1, 2, 3, 4, 5]
    summary = next(
        t for t in get(server, "/api/v1/traces").json()["traces"] if t["trace_id"] == trace_id
    )
    assert summary["span_count"] == 7 and summary["event_count"] == 6
    assert summary["name"] == "pieces" and summary["status"] == "ok"


def test_otlp_json_with_hex_ids(server: Server) -> None:
    spans = agent_spans("json_run")
    trace_id = trace_id_of(spans)
    body = json_format.MessageToDict(encode_spans(spans))
    for resource in body["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    response = post(server, json.dumps(body).encode(), **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = get(server, f"/api/v1/traces/{trace_id}").json()
    assert document["run"]["name"] == "json_run"
    assert [e["seq"] for e in document["events"]] == [0, 1, 2]


def test_list_newest_first_with_status_filter_and_cursor(tmp_path: Path) -> None:
    key = "at_test_listing_0123456789abcdefghij"
    with agenttrace_serve(tmp_path, "--api-key", key) as srv:
        ids = []
        for i in range(5):
            spans = agent_spans(f"run{i}", fail=i in (1, 3))
            ids.append(trace_id_of(spans))
            assert post(srv, protobuf(spans), key=key).status_code == 200

        everything = get(srv, "/api/v1/traces", key=key).json()
        assert [t["trace_id"] for t in everything["traces"]] == ids[::-1]
        assert everything["next_cursor"] is None

        failed = get(srv, "/api/v1/traces", key=key, status="error").json()["traces"]
        assert [t["trace_id"] for t in failed] == [ids[3], ids[1]]
        assert failed[0]["error"] == "ValueError: boom"

        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = get(srv, "/api/v1/traces", key=key, **params).json()
            seen += [t["trace_id"] for t in page["traces"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]

        for bad in ({"status": "weird"}, {"limit": "0"}, {"limit": "x"}, {"cursor": "!!"}):
            response = get(srv, "/api/v1/traces", key=key, **bad)
            assert response.status_code == 400, bad
        assert get(srv, "/api/v1/traces/not-a-trace-id", key=key).status_code == 400
        assert get(srv, "/api/v1/traces/" + "0" * 31 + "1", key=key).status_code == 404


def test_acknowledged_spans_survive_shutdown_and_restart(tmp_path: Path) -> None:
    key = "at_test_durable_0123456789abcdefghij"
    spans = agent_spans("durable", calls=20)
    with agenttrace_serve(tmp_path, "--api-key", key) as srv:
        for i in range(0, len(spans), 3):
            assert post(srv, protobuf(spans[i : i + 3]), key=key).status_code == 200
        srv.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly, so the status tells it.
        assert srv.proc.wait(20) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.logs()
    with contextlib.closing(sqlite3.connect(srv.db)) as db:
        assert db.execute("SELECT count(*) FROM spans").fetchone()[0] == len(spans)
    with agenttrace_serve(tmp_path, "--api-key", key) as again:
        document = get(again, f"/api/v1/traces/{trace_id_of(spans)}", key=key).json()
        assert len(document["events"]) == 21


def test_the_api_key_is_never_stored_or_logged(server: Server) -> None:
    # Exercise every path that sees a key, good and bad, then look everywhere.
    post(server, protobuf(agent_spans()), key=KEY_A)
    post(server, protobuf(agent_spans()), key=KEY_B)
    post(server, b"garbage", key=KEY_A)
    get(server, "/api/v1/traces", key="at_test_wrong_key_000000000000000000")
    stored = b"".join(p.read_bytes() for p in server.db.parent.glob("agenttrace.db*"))
    assert len(stored) > 0
    logs = server.logs()
    for key in (KEY_A, KEY_B, "at_test_wrong_key_000000000000000000"):
        assert key.encode() not in stored
        assert key not in logs


def test_every_limit_flag_is_in_the_readme_table() -> None:
    from agenttrace.server.limits import knobs

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Limits and timeouts", 1)[1].split("###", 1)[0]
    for knob in knobs():
        assert f"| `{knob.metadata['flag']}` |" in table, knob.name
