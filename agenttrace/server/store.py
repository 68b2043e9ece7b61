"""SQLite storage for ingested spans, one project per API key (identified by the key's SHA-256).

Spans are keyed by (project, trace_id, span_id), so batches that arrive in pieces or twice (an
exporter retrying after a lost response) assemble into one trace without duplicates. A small
``traces`` table is maintained at ingest so listing never scans spans.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._trace import ATTR_EVENT, ATTR_EVENTS, ATTR_RUN_NAME, run_status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    project TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    status TEXT NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL,
    PRIMARY KEY (project, trace_id, span_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traces (
    project TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL DEFAULT 'unset',
    error TEXT,
    service_name TEXT,
    root_rank INTEGER NOT NULL DEFAULT -1,
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    span_count INTEGER NOT NULL DEFAULT 0,
    event_count INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    PRIMARY KEY (project, trace_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS traces_newest ON traces (project, started_ns DESC, trace_id DESC);
CREATE INDEX IF NOT EXISTS traces_by_status
    ON traces (project, status, started_ns DESC, trace_id DESC);
"""

_INSERT_SPAN = """
INSERT INTO spans (project, trace_id, span_id, parent_id, name, kind, start_ns, end_ns,
                   status, status_message, attributes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

_UPSERT_TRACE = """
INSERT INTO traces (project, trace_id, started_ns, ended_ns, span_count, event_count,
                    service_name, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project, trace_id) DO UPDATE SET
    started_ns = min(started_ns, excluded.started_ns),
    ended_ns = max(coalesce(ended_ns, 0), coalesce(excluded.ended_ns, 0)),
    span_count = span_count + excluded.span_count,
    event_count = event_count + excluded.event_count,
    service_name = coalesce(service_name, excluded.service_name)
"""


class CursorError(ValueError):
    """A pagination cursor that this server did not hand out."""


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    traces: int


class Store:
    """Thread-safe: one writer connection behind a lock, one reader connection per thread (WAL)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        with self._writer:
            self._writer.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=10000")
        # FULL: a batch the server acknowledged survives power loss, not just a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another process holds the db; the WAL is still durable
            self._writer.close()

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    # -- writes ---------------------------------------------------------------------------------

    def ingest(
        self,
        project: str,
        spans: Iterable[Mapping[str, Any]],
        service_names: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """Store spans; returns once the transaction is committed (durable before acknowledging)."""
        by_trace: dict[str, list[Mapping[str, Any]]] = {}
        for span in spans:
            by_trace.setdefault(span["trace_id"], []).append(span)
        accepted = duplicates = 0
        now = time.time()
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                for trace_id, group in by_trace.items():
                    new, events = 0, 0
                    for span in group:
                        if self._insert_span(conn, project, span):
                            new += 1
                            events += _event_count(span["attributes"])
                    accepted += new
                    duplicates += len(group) - new
                    ends = [s["end_ns"] for s in group if s.get("end_ns")]
                    conn.execute(
                        _UPSERT_TRACE,
                        (
                            project,
                            trace_id,
                            min(s["start_ns"] for s in group),
                            max(ends) if ends else None,
                            new,
                            events,
                            (service_names or {}).get(trace_id),
                            now,
                        ),
                    )
                    self._update_root(conn, project, trace_id, group)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return IngestResult(accepted=accepted, duplicates=duplicates, traces=len(by_trace))

    @staticmethod
    def _insert_span(conn: sqlite3.Connection, project: str, span: Mapping[str, Any]) -> bool:
        cur = conn.execute(
            _INSERT_SPAN,
            (
                project,
                span["trace_id"],
                span["span_id"],
                span.get("parent_id"),
                span["name"],
                span["kind"],
                span["start_ns"],
                span.get("end_ns"),
                span["status"],
                span.get("status_message"),
                json.dumps(
                    span["attributes"], ensure_ascii=False, separators=(",", ":"), default=str
                ),
            ),
        )
        return cur.rowcount == 1

    @staticmethod
    def _update_root(
        conn: sqlite3.Connection, project: str, trace_id: str, group: list[Mapping[str, Any]]
    ) -> None:
        # The run's root span names the trace and gives its status; it usually arrives last
        # (it ends last), so the summary is refined whenever a better candidate shows up.
        best, rank = None, -1
        for span in group:
            span_rank = (2 if ATTR_RUN_NAME in span["attributes"] else 0) + (
                0 if span.get("parent_id") else 1
            )
            if span_rank > rank and (span_rank >= 2 or not span.get("parent_id")):
                best, rank = span, span_rank
        if best is None:
            return
        status = run_status(best)
        conn.execute(
            "UPDATE traces SET name = ?, status = ?, error = ?, root_rank = ? "
            "WHERE project = ? AND trace_id = ? AND root_rank <= ?",
            (
                best["attributes"].get(ATTR_RUN_NAME, best["name"]),
                status,
                best.get("status_message") if status not in ("ok", "unset") else None,
                rank,
                project,
                trace_id,
                rank,
            ),
        )

    # -- reads ----------------------------------------------------------------------------------

    def list_traces(
        self,
        project: str,
        *,
        status: str | list[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first (by run start); ``status``: one or several. Returns (summaries, cursor
        of the next page or None)."""
        where = ["project = ?"]
        params: list[Any] = [project]
        if status:
            wanted = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if cursor:
            started_ns, trace_id = _decode_cursor(cursor)
            where.append("(started_ns < ? OR (started_ns = ? AND trace_id < ?))")
            params += [started_ns, started_ns, trace_id]
        rows = (
            self._reader()
            .execute(
                f"SELECT * FROM traces WHERE {' AND '.join(where)} "
                "ORDER BY started_ns DESC, trace_id DESC LIMIT ?",
                (*params, limit + 1),
            )
            .fetchall()
        )
        page = [_summary(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(last["started_ns"], last["trace_id"])
        return page, next_cursor

    def trace_spans(self, project: str, trace_id: str) -> list[dict[str, Any]]:
        """Span records of one trace of this project (empty if it has none)."""
        rows = (
            self._reader()
            .execute(
                "SELECT * FROM spans WHERE project = ? AND trace_id = ? ORDER BY start_ns, span_id",
                (project, trace_id),
            )
            .fetchall()
        )
        return [
            {
                "trace_id": row["trace_id"],
                "span_id": row["span_id"],
                "parent_id": row["parent_id"],
                "name": row["name"],
                "kind": row["kind"],
                "start_ns": row["start_ns"],
                "end_ns": row["end_ns"],
                "status": row["status"],
                "status_message": row["status_message"],
                "attributes": json.loads(row["attributes"]),
            }
            for row in rows
        ]


def _event_count(attributes: Mapping[str, Any]) -> int:
    count = 1 if attributes.get(ATTR_EVENT) else 0
    raw = attributes.get(ATTR_EVENTS)
    if isinstance(raw, str) and raw:
        try:
            listed = json.loads(raw)
        except ValueError:
            listed = []
        count += len(listed) if isinstance(listed, list) else 0
    return count


def _iso(ns: int | None) -> str | None:
    # Rendered exactly as the trace document renders its timestamps.
    if not ns:
        return None
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def _summary(row: sqlite3.Row) -> dict[str, Any]:
    ended = row["ended_ns"] or None
    return {
        "trace_id": row["trace_id"],
        "name": row["name"],
        "status": row["status"],
        "error": row["error"],
        "service_name": row["service_name"],
        "started_at": _iso(row["started_ns"]),
        "ended_at": _iso(ended),
        "duration_ms": round((ended - row["started_ns"]) / 1e6, 3) if ended else None,
        "span_count": row["span_count"],
        "event_count": row["event_count"],
    }


def _encode_cursor(started_ns: int, trace_id: str) -> str:
    return base64.urlsafe_b64encode(f"{started_ns}:{trace_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        started, trace_id = raw.split(":", 1)
        return int(started), trace_id
    except (ValueError, UnicodeDecodeError):
        raise CursorError(f"cursor {cursor!r} is not one this server handed out") from None
