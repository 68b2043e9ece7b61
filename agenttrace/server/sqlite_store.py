"""The embedded default: one SQLite file in WAL mode (one writer, readers alongside)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .store import PruneResult, SchemaError, SqlStore, StoreUnavailable

# Index = schema version - 1; each step brings a database from the version before it.
# Version 1 is the schema of the first release (created with IF NOT EXISTS, so a database made
# before versions were recorded is taken as version 1).
_MIGRATIONS = (
    """
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
    """,
    # Retention: received_at now moves with the latest span of the trace.
    "CREATE INDEX IF NOT EXISTS traces_received ON traces (received_at);",
)

_INSERT_SPAN = """
INSERT INTO spans (project, trace_id, span_id, parent_id, name, kind, start_ns, end_ns,
                   status, status_message, attributes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""


class SqliteStore(SqlStore):
    """One writer connection behind a lock, one reader connection per thread (WAL)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.location = self.path
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the database {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=10000")
        # FULL: a batch the server acknowledged survives power loss, not just a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self) -> None:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(_MIGRATIONS):
                    raise SchemaError(
                        f"{self.path} has schema version {version}, newer than this agenttrace "
                        f"knows ({len(_MIGRATIONS)}); upgrade agenttrace"
                    )
                for script in _MIGRATIONS[version:]:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

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
        with self._unavailable():
            self._reader().execute("SELECT 1").fetchone()

    def _write(self, work: Any) -> Any:
        with self._unavailable(), self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return result

    def _read(self, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        with self._unavailable():
            return self._reader().execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full, I/O
            raise StoreUnavailable(f"{self.path}: {exc}") from None

    def _executemany(self, db: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return db.executemany(sql, rows).rowcount if rows else 0

    def _insert_spans(
        self, db: sqlite3.Connection, project: str, rows: list[tuple[Any, ...]]
    ) -> set[str]:
        new = set()
        for row in rows:
            if db.execute(_INSERT_SPAN, (project, *row)).rowcount == 1:
                new.add(row[0] + row[1])
        return new

    def _prune_batch(
        self, db: sqlite3.Connection, received_before: float, limit: int
    ) -> PruneResult:
        doomed = db.execute(
            "SELECT project, trace_id FROM traces WHERE received_at < ? LIMIT ?",
            (received_before, limit),
        ).fetchall()
        spans = self._executemany(
            db, "DELETE FROM spans WHERE project = ? AND trace_id = ?", doomed
        )
        traces = self._executemany(
            db, "DELETE FROM traces WHERE project = ? AND trace_id = ?", doomed
        )
        return PruneResult(traces=traces, spans=spans)
