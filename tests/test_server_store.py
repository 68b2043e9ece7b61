"""The storage contract, one suite run against both stores: SQLite (a file) and PostgreSQL (a
real server, see the `postgres` fixture). Both must behave the same in every test here."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrace.server.store import CursorError, SchemaError, SqlStore
from agenttrace.server.stores import open_store

P1 = "1" * 64
P2 = "2" * 64


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives: an SQLite path or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres").database()


@pytest.fixture
def store(db: str) -> Iterator[SqlStore]:
    opened = open_store(db)
    yield opened
    opened.close()


def span(
    trace: int, n: int, *, parent: int | None = 0, start: int = 0, **fields: Any
) -> dict[str, Any]:
    """Span ``n`` of trace ``trace``; span 0 is the root unless ``parent`` says otherwise."""
    record = {
        "trace_id": f"{trace:032x}",
        "span_id": f"{n + 1:016x}",
        "parent_id": None if n == 0 or parent is None else f"{parent + 1:016x}",
        "name": f"span{n}",
        "kind": "CLIENT" if n else "INTERNAL",
        "start_ns": 1_700_000_000_000_000_000 + trace * 1_000_000 + start + n,
        "end_ns": 1_700_000_000_000_000_000 + trace * 1_000_000 + start + n + 5_000_000,
        "status": "ok",
        "status_message": None,
        "attributes": {"agenttrace.event": f'{{"seq": {n}}}'} if n else {},
    }
    record.update(fields)
    return record


def run(trace: int, calls: int = 3, name: str = "agent", **root: Any) -> list[dict[str, Any]]:
    """A run: its root span (named ``name``) and ``calls`` CLIENT spans."""
    attributes = {"agenttrace.run.name": name, "agenttrace.events": '[{"seq": 0}]'}
    return [span(trace, 0, attributes=attributes, **root)] + [
        span(trace, n) for n in range(1, calls + 1)
    ]


def summaries(store: SqlStore, project: str = P1, **query: Any) -> list[dict[str, Any]]:
    return store.list_traces(project, **query)[0]


# -- ingest ---------------------------------------------------------------------------------------


def test_spans_come_back_as_they_went_in(store: SqlStore) -> None:
    spans = run(1)
    spans[1]["attributes"] = {"n": 1, "f": 1.5, "b": True, "list": [1, "x"], "map": {"k": None}}
    spans[2]["status"], spans[2]["status_message"] = "error", "boom"
    result = store.ingest(P1, spans, {f"{1:032x}": "checkout"})
    assert (result.accepted, result.duplicates, result.traces) == (4, 0, 1)
    assert store.trace_spans(P1, f"{1:032x}") == sorted(
        spans, key=lambda s: (s["start_ns"], s["span_id"])
    )
    (summary,) = summaries(store)
    assert summary["name"] == "agent" and summary["status"] == "ok"
    assert summary["service_name"] == "checkout"
    assert summary["span_count"] == 4 and summary["event_count"] == 3  # span 1 lost its event
    assert summary["started_at"] == "2023-11-14T22:13:20.001000Z"
    assert summary["duration_ms"] == 5.0


def test_retries_and_pieces_assemble_one_trace_without_duplicates(store: SqlStore) -> None:
    spans = run(2, calls=6)
    root, calls = spans[0], spans[1:]
    assert store.ingest(P1, calls[:3]).accepted == 3
    again = store.ingest(P1, calls[:3] + calls[3:])  # a retry carrying a new piece
    assert (again.accepted, again.duplicates) == (3, 3)
    assert store.ingest(P1, [root, root]).accepted == 1  # the root ends last, sent twice
    assert len(store.trace_spans(P1, f"{2:032x}")) == 7
    (summary,) = summaries(store)
    assert summary["span_count"] == 7 and summary["event_count"] == 7
    assert summary["name"] == "agent" and summary["status"] == "ok"


def test_the_root_span_decides_name_and_status(store: SqlStore) -> None:
    store.ingest(P1, [span(3, 1)])
    assert summaries(store)[0]["name"] is None  # no root seen yet
    failed = run(3, name="doomed", status="error", status_message="ValueError: boom")
    store.ingest(P1, failed)
    (summary,) = summaries(store)
    assert summary["name"] == "doomed"
    assert summary["status"] == "error" and summary["error"] == "ValueError: boom"
    store.ingest(P1, [span(3, 9, parent=None, name="stray root")])
    assert summaries(store)[0]["name"] == "doomed"  # a run span outranks a bare root


def test_text_any_database_can_keep(store: SqlStore) -> None:
    odd = run(4, name="nul\x00name")
    odd[1]["name"] = "POST\x00"
    odd[2]["attributes"] = {"nul\x00key": "nul\x00value", "é": "ü", "nan": float("nan")}
    store.ingest(P1, odd, {f"{4:032x}": "svc\x00"})
    (summary,) = summaries(store)
    assert summary["name"] == "nul\ufffdname" and summary["service_name"] == "svc\ufffd"
    spans = {s["span_id"]: s for s in store.trace_spans(P1, f"{4:032x}")}
    assert spans[odd[1]["span_id"]]["name"] == "POST\ufffd"
    # NaN reads back as protobuf's JSON spells it, so the API can answer strict JSON.
    assert spans[odd[2]["span_id"]]["attributes"] == {
        "nul\x00key": "nul\x00value",
        "é": "ü",
        "nan": "NaN",
    }
    structured = run(5, name="x")
    structured[0]["attributes"]["agenttrace.run.name"] = {"not": "a string"}
    store.ingest(P1, structured)
    assert summaries(store)[0]["name"] == '{"not": "a string"}'


def test_each_project_sees_only_its_own(store: SqlStore) -> None:
    store.ingest(P1, run(6, name="mine"))
    store.ingest(P2, run(6, name="theirs", calls=1))  # the same trace id in another project
    assert [s["name"] for s in summaries(store, P1)] == ["mine"]
    assert [s["name"] for s in summaries(store, P2)] == ["theirs"]
    assert len(store.trace_spans(P1, f"{6:032x}")) == 4
    assert len(store.trace_spans(P2, f"{6:032x}")) == 2
    assert store.trace_spans("3" * 64, f"{6:032x}") == []


# -- listing --------------------------------------------------------------------------------------


def test_newest_first_with_status_filter_and_cursor(store: SqlStore) -> None:
    for trace in range(10, 17):
        store.ingest(P1, run(trace, calls=1, status="error" if trace % 3 == 0 else "ok"))
    newest_first = [f"{t:032x}" for t in range(16, 9, -1)]
    assert [s["trace_id"] for s in summaries(store)] == newest_first
    failed = [s["trace_id"] for s in summaries(store, status="error")]
    assert failed == [f"{t:032x}" for t in (15, 12)]

    seen, cursor = [], None
    while True:
        page, cursor = store.list_traces(P1, limit=3, cursor=cursor)
        seen += [s["trace_id"] for s in page]
        if cursor is None:
            break
    assert seen == newest_first
    assert store.list_traces(P1, limit=7)[1] is None


@pytest.mark.parametrize(
    "cursor",
    ["!!", "bm90IGEgY3Vyc29y", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk6" + "YQ", "LTE6" + "YWFh"],
)
def test_cursors_this_store_never_made_are_refused(store: SqlStore, cursor: str) -> None:
    with pytest.raises(CursorError):
        store.list_traces(P1, cursor=cursor)


# -- several writers (threads, or replicas sharing the database) ----------------------------------


def test_concurrent_writers_lose_and_double_nothing(store: SqlStore, db: str) -> None:
    replica = open_store(db)  # a second store on the same database: another replica
    traces = [run(t, calls=20) for t in range(20, 26)]
    errors: list[BaseException] = []

    def writer(target: SqlStore, offset: int) -> Callable[[], None]:
        def work() -> None:
            try:
                for spans in traces:
                    # Overlapping pieces, in an order the other writers do not share.
                    rotated = spans[offset:] + spans[:offset]
                    for i in range(0, len(rotated), 5):
                        target.ingest(P1, rotated[i : i + 9])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        return work

    threads = [
        threading.Thread(target=writer(target, offset))
        for offset, target in enumerate((store, replica, store, replica))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    replica.close()
    assert errors == []
    listed = summaries(store)
    assert len(listed) == len(traces)
    for summary in listed:
        assert summary["span_count"] == 21 and summary["event_count"] == 21
        assert summary["name"] == "agent" and summary["status"] == "ok"
        assert len(store.trace_spans(P1, summary["trace_id"])) == 21


# -- retention ------------------------------------------------------------------------------------


def test_prune_deletes_traces_last_written_before_the_cutoff(store: SqlStore) -> None:
    for trace in range(30, 35):
        store.ingest(P1 if trace % 2 else P2, run(trace))
    time.sleep(0.01)
    cutoff = time.time()
    time.sleep(0.01)
    store.ingest(P1, run(35))
    store.ingest(P1, [span(31, 7)])  # a late span keeps its trace alive

    first = store.prune(cutoff, limit=2)
    assert (first.traces, first.spans) == (2, 8)
    rest = store.prune(cutoff, limit=500)
    assert (rest.traces, rest.spans) == (2, 8)
    assert store.prune(cutoff).traces == 0
    assert sorted(s["trace_id"] for s in summaries(store)) == [f"{t:032x}" for t in (31, 35)]
    assert summaries(store, P2) == []
    assert store.trace_spans(P2, f"{30:032x}") == []
    assert len(store.trace_spans(P1, f"{31:032x}")) == 5


# -- schema ---------------------------------------------------------------------------------------


def test_reopening_keeps_the_data_and_a_newer_schema_is_refused(store: SqlStore, db: str) -> None:
    store.ingest(P1, run(40))
    again = open_store(db)
    assert len(summaries(again)) == 1
    again.close()
    _set_schema_version(db, 99)
    with pytest.raises(SchemaError, match="schema version 99, newer than this agenttrace"):
        open_store(db)


def _set_schema_version(db: str, version: int) -> None:
    if db.endswith(".db"):
        with sqlite3.connect(db) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        return
    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE agenttrace_schema SET version = %s", (version,))


def test_an_sqlite_file_from_before_schema_versions_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = open_store(str(path))
    store.ingest(P1, run(41))
    store.close()
    with sqlite3.connect(path) as conn:  # what the first release left behind
        conn.execute("DROP INDEX traces_received")
        conn.execute("PRAGMA user_version = 0")
    store = open_store(str(path))
    assert len(summaries(store)) == 1
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(traces)")}
    assert "traces_received" in indexes
