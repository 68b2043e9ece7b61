"""PostgreSQL storage (psycopg 3 with a connection pool): several ``serve`` replicas, one database.

Replicas coordinate through the database alone: span inserts skip what another replica already
stored, trace summaries are upserted under their row lock, every writer takes rows in the same
order, and a transaction the database aborts as a deadlock is retried.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .store import PruneResult, SchemaError, SqlStore, StoreUnavailable

POOL_SIZE = 10
_CONNECT_TIMEOUT = 10
# How long a call waits for a pooled connection before answering 503 (clients retry that).
_POOL_WAIT = 5
_WRITE_ATTEMPTS = 5
_SCHEMA_LOCK = 0x61677472616365  # pg_advisory_xact_lock key: replicas migrate one at a time

# Index = schema version - 1 (kept in agenttrace_schema).
_MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS spans (
        project text COLLATE "C" NOT NULL,
        trace_id text COLLATE "C" NOT NULL,
        span_id text COLLATE "C" NOT NULL,
        parent_id text,
        name text NOT NULL,
        kind text NOT NULL,
        start_ns bigint NOT NULL,
        end_ns bigint,
        status text NOT NULL,
        status_message text,
        attributes text NOT NULL,
        PRIMARY KEY (project, trace_id, span_id)
    );
    CREATE TABLE IF NOT EXISTS traces (
        project text COLLATE "C" NOT NULL,
        trace_id text COLLATE "C" NOT NULL,
        name text,
        status text NOT NULL DEFAULT 'unset',
        error text,
        service_name text,
        root_rank integer NOT NULL DEFAULT -1,
        started_ns bigint NOT NULL,
        ended_ns bigint,
        span_count bigint NOT NULL DEFAULT 0,
        event_count bigint NOT NULL DEFAULT 0,
        received_at double precision NOT NULL,
        PRIMARY KEY (project, trace_id)
    );
    CREATE INDEX IF NOT EXISTS traces_newest ON traces (project, started_ns DESC, trace_id DESC);
    CREATE INDEX IF NOT EXISTS traces_by_status
        ON traces (project, status, started_ns DESC, trace_id DESC);
    CREATE INDEX IF NOT EXISTS traces_received ON traces (received_at);
    """,
)

# Sent with executemany, which psycopg pipelines: one round trip for the batch, and RETURNING
# says which rows were new. (Arrays through unnest() cost 6x more to adapt in Python.)
_INSERT_SPAN = """
INSERT INTO spans (project, trace_id, span_id, parent_id, name, kind, start_ns, end_ns,
                   status, status_message, attributes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING trace_id || span_id AS key
"""

# SKIP LOCKED: a trace another replica is pruning, or that is being written to, waits for the
# next batch instead of blocking this one.
_PRUNE = """
WITH doomed AS (
    SELECT project, trace_id FROM traces WHERE received_at < %s
    ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED
), gone_spans AS (
    DELETE FROM spans s USING doomed d
    WHERE s.project = d.project AND s.trace_id = d.trace_id RETURNING 1
), gone_traces AS (
    DELETE FROM traces t USING doomed d
    WHERE t.project = d.project AND t.trace_id = d.trace_id RETURNING 1
)
SELECT (SELECT count(*) FROM gone_traces) AS traces, (SELECT count(*) FROM gone_spans) AS spans
"""


_PASSWORDS = (
    (re.compile(r"(://[^:/@\s]*):[^@/\s]*@"), r"\1:***@"),  # postgresql://user:password@host
    (re.compile(r"(password=)[^&\s]*", re.IGNORECASE), r"\1***"),  # ?password=... or key=value
)


def masked(text: str) -> str:
    """A URL (or a message quoting one) as it may be printed: without its password."""
    for pattern, replacement in _PASSWORDS:
        text = pattern.sub(replacement, text)
    return text


class PostgresStore(SqlStore):
    # What is left of the pool after writes and reads serves /healthz.
    write_concurrency = 4
    read_concurrency = 4

    def __init__(self, url: str) -> None:
        self.location = masked(url)
        _probe(url, self.location)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"row_factory": dict_row, "connect_timeout": _CONNECT_TIMEOUT},
            # A connection the database dropped (a restart, a failover) is replaced, not used.
            check=ConnectionPool.check_connection,
            timeout=_POOL_WAIT,
            open=False,
            name="agenttrace",
        )
        self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS agenttrace_schema (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) AS version FROM agenttrace_schema").fetchone()
            version = (row or {}).get("version") or 0
            if version > len(_MIGRATIONS):
                raise SchemaError(
                    f"{self.location} has schema version {version}, newer than this agenttrace "
                    f"knows ({len(_MIGRATIONS)}); upgrade agenttrace on every replica"
                )
            for script in _MIGRATIONS[version:]:
                conn.execute(script)
            conn.execute("DELETE FROM agenttrace_schema")
            conn.execute("INSERT INTO agenttrace_schema VALUES (%s)", (len(_MIGRATIONS),))

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        with self._unavailable(), self._pool.connection() as conn:
            conn.execute("SELECT 1")

    def _write(self, work: Any) -> Any:
        with self._unavailable():
            for attempt in range(_WRITE_ATTEMPTS):
                try:
                    with self._pool.connection() as conn, conn.transaction():
                        return work(conn)
                except (errors.DeadlockDetected, errors.SerializationFailure):
                    if attempt == _WRITE_ATTEMPTS - 1:
                        raise
                    time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        with self._unavailable(), self._pool.connection() as conn:
            return conn.execute(_placeholders(sql), params).fetchall()

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:  # unreachable, restarting, pool exhausted
            raise StoreUnavailable(f"{self.location}: {_reason(exc)}") from None

    def _executemany(self, db: psycopg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with db.cursor() as cur:
            cur.executemany(_placeholders(sql), rows)
            return cur.rowcount

    def _insert_spans(
        self, db: psycopg.Connection, project: str, rows: list[tuple[Any, ...]]
    ) -> set[str]:
        new = set()
        with db.cursor() as cur:
            cur.executemany(_INSERT_SPAN, [(project, *row) for row in rows], returning=True)
            while True:
                new.update(row["key"] for row in cur.fetchall())
                if not cur.nextset():
                    return new

    def _prune_batch(
        self, db: psycopg.Connection, received_before: float, limit: int
    ) -> PruneResult:
        row = db.execute(_PRUNE, (received_before, limit)).fetchone()
        return PruneResult(traces=row["traces"], spans=row["spans"])


def _placeholders(sql: str) -> str:
    # The shared SQL is written with ? (SQLite's style); psycopg wants %s.
    return sql.replace("?", "%s")


def _probe(url: str, location: str) -> None:
    """Fail at start with the database's own reason (the pool would only time out)."""
    try:
        psycopg.connect(url, connect_timeout=_CONNECT_TIMEOUT).close()
    except psycopg.Error as exc:
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {location}: {_reason(exc)}; check the --db URL "
            "(postgresql://user:password@host:port/database) and that the server is running"
        ) from None


def _reason(exc: Exception) -> str:
    # libpq quotes a URL it cannot parse, password included.
    return masked(" ".join(str(exc).split())) or type(exc).__name__
