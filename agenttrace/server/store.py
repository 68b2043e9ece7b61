"""Storage for ingested spans, one project per API key (identified by the key's SHA-256).

Spans are keyed by (project, trace_id, span_id), so batches that arrive in pieces, twice (an
exporter retrying after a lost response) or at different replicas assemble into one trace
without duplicates. A small ``traces`` table is maintained at ingest so listing never scans
spans. ``SqlStore`` holds everything both databases share (the SQL is portable); the backends
(``sqlite_store``, ``postgres_store``) supply connections, transactions and their schema.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._trace import ATTR_EVENT, ATTR_EVENTS, ATTR_RUN_NAME, run_status
from .._trace import STATUSES as STATUSES  # the statuses a run can have (re-exported)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# Portable SQL (SQLite and PostgreSQL), written with ? placeholders.
UPSERT_TRACE = """
INSERT INTO traces (project, trace_id, started_ns, ended_ns, span_count, event_count,
                    service_name, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project, trace_id) DO UPDATE SET
    started_ns = CASE WHEN excluded.started_ns < traces.started_ns
                      THEN excluded.started_ns ELSE traces.started_ns END,
    ended_ns = CASE WHEN coalesce(excluded.ended_ns, 0) > coalesce(traces.ended_ns, 0)
                    THEN excluded.ended_ns ELSE traces.ended_ns END,
    span_count = traces.span_count + excluded.span_count,
    event_count = traces.event_count + excluded.event_count,
    service_name = coalesce(traces.service_name, excluded.service_name),
    received_at = excluded.received_at
"""

# The run's root span names the trace and gives its status; it usually arrives last (it ends
# last), so the summary is refined whenever a better candidate shows up.
UPDATE_ROOT = """
UPDATE traces SET name = ?, status = ?, error = ?, root_rank = ?
WHERE project = ? AND trace_id = ? AND root_rank <= ?
"""

_SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status",
    "status_message",
    "attributes",
)
_MAX_NS = 2**63 - 1
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class CursorError(ValueError):
    """A pagination cursor that this server did not hand out."""


class StoreUnavailable(RuntimeError):
    """The database cannot be opened or reached; the message names the cause and the fix."""


class SchemaError(StoreUnavailable):
    """The database holds a schema this version of agenttrace cannot use."""


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    traces: int


@dataclass(frozen=True)
class PruneResult:
    traces: int
    spans: int


class SqlStore(ABC):
    """Thread-safe span storage; every write is committed before the call returns."""

    #: database calls worth running at the same time (the app gives them that many threads)
    write_concurrency = 1
    read_concurrency = 8
    #: where the data lives, as it may be printed (no password)
    location = ""

    # -- what a backend provides ----------------------------------------------------------------

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise unless the database answers."""

    @abstractmethod
    def _write(self, work: Any) -> Any:
        """Run ``work(db)`` in one write transaction (retried if the database asks) and commit.

        This and ``_read`` and ``ping`` raise StoreUnavailable when the database cannot be
        used right now (unreachable, locked, out of space): the client should retry.
        """

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]: ...

    @abstractmethod
    def _executemany(self, db: Any, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` once per row; returns the rows changed."""

    @abstractmethod
    def _insert_spans(self, db: Any, project: str, rows: list[tuple[Any, ...]]) -> set[str]:
        """Insert span rows (``_SPAN_COLUMNS`` order), skipping stored ones; returns the
        ``trace_id + span_id`` of those that were new."""

    @abstractmethod
    def _prune_batch(self, db: Any, received_before: float, limit: int) -> PruneResult: ...

    # -- writes ---------------------------------------------------------------------------------

    def ingest(
        self,
        project: str,
        spans: Iterable[Mapping[str, Any]],
        service_names: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """Store spans; returns once the transaction is committed (durable before acknowledging)."""
        unique: dict[str, Mapping[str, Any]] = {}
        for span in spans:
            unique.setdefault(span["trace_id"] + span["span_id"], span)
        # One order for every writer: concurrent replicas then lock rows in the same sequence.
        ordered = [unique[key] for key in sorted(unique)]
        rows = [_span_row(span) for span in ordered]
        names = service_names or {}

        def work(db: Any) -> int:
            new = self._insert_spans(db, project, rows)
            fresh = [span for span in ordered if span["trace_id"] + span["span_id"] in new]
            now = time.time()
            traces, roots = _summaries(project, ordered, fresh, names, now)
            self._executemany(db, UPSERT_TRACE, traces)
            self._executemany(db, UPDATE_ROOT, roots)
            return len(new)

        accepted = self._write(work) if rows else 0
        traces = len({span["trace_id"] for span in ordered})
        return IngestResult(accepted=accepted, duplicates=len(ordered) - accepted, traces=traces)

    def prune(self, received_before: float, limit: int = 500) -> PruneResult:
        """Delete up to ``limit`` traces whose latest span arrived before ``received_before``
        (seconds since the epoch), with their spans, in one short transaction."""
        return self._write(lambda db: self._prune_batch(db, received_before, limit))

    # -- reads ----------------------------------------------------------------------------------

    def list_traces(
        self,
        project: str,
        *,
        status: str | Sequence[str] | None = None,
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
        rows = self._read(
            f"SELECT * FROM traces WHERE {' AND '.join(where)} "
            "ORDER BY started_ns DESC, trace_id DESC LIMIT ?",
            (*params, limit + 1),
        )
        page = [_summary(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(last["started_ns"], last["trace_id"])
        return page, next_cursor

    def trace_summary(self, project: str, trace_id: str) -> dict[str, Any] | None:
        """The ``list_traces`` entry of one trace of this project (None if it has no such trace)."""
        rows = self._read(
            "SELECT * FROM traces WHERE project = ? AND trace_id = ?", (project, trace_id)
        )
        return _summary(rows[0]) if rows else None

    def trace_spans(self, project: str, trace_id: str) -> list[dict[str, Any]]:
        """Span records of one trace of this project (empty if it has none)."""
        rows = self._read(
            f"SELECT {', '.join(_SPAN_COLUMNS)} FROM spans "
            "WHERE project = ? AND trace_id = ? ORDER BY start_ns, span_id",
            (project, trace_id),
        )
        return [
            {
                **{column: row[column] for column in _SPAN_COLUMNS[:-1]},
                # NaN and Infinity (stored before they were kept as strings) read back as
                # protobuf's JSON spells them: the API answers strict JSON.
                "attributes": json.loads(row["attributes"], parse_constant=str),
            }
            for row in rows
        ]


# -- what both backends compute the same way -----------------------------------------------------


def _span_row(span: Mapping[str, Any]) -> tuple[Any, ...]:
    attributes = json.dumps(
        span["attributes"], ensure_ascii=False, separators=(",", ":"), default=str
    )
    values = (span.get(column) for column in _SPAN_COLUMNS[:-1])
    return (*(_text(v) if isinstance(v, str) else v for v in values), attributes)


def _text(value: str) -> str:
    """A string both databases keep as it is, but for NUL (PostgreSQL text cannot hold it)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _summaries(
    project: str,
    spans: list[Mapping[str, Any]],
    fresh: list[Mapping[str, Any]],
    service_names: Mapping[str, str],
    now: float,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows for UPSERT_TRACE and UPDATE_ROOT, one per trace, in trace order.

    Times and root come from every span of the batch (a retry may complete what a lost batch
    began); counts only from the spans that were new.
    """
    by_trace: dict[str, list[Mapping[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["trace_id"], []).append(span)
    new_spans: dict[str, int] = {}
    new_events: dict[str, int] = {}
    for span in fresh:
        trace_id = span["trace_id"]
        new_spans[trace_id] = new_spans.get(trace_id, 0) + 1
        new_events[trace_id] = new_events.get(trace_id, 0) + _event_count(span["attributes"])
    upserts, roots = [], []
    for trace_id, group in by_trace.items():
        ends = [s["end_ns"] for s in group if s.get("end_ns")]
        upserts.append(
            (
                project,
                trace_id,
                min(s["start_ns"] for s in group),
                max(ends) if ends else None,
                new_spans.get(trace_id, 0),
                new_events.get(trace_id, 0),
                _text(service_names[trace_id]) if trace_id in service_names else None,
                now,
            )
        )
        root = _root_update(project, trace_id, group)
        if root is not None:
            roots.append(root)
    return upserts, roots


def _root_update(
    project: str, trace_id: str, group: list[Mapping[str, Any]]
) -> tuple[Any, ...] | None:
    best, rank = None, -1
    for span in group:
        span_rank = (2 if ATTR_RUN_NAME in span["attributes"] else 0) + (
            0 if span.get("parent_id") else 1
        )
        if span_rank > rank and (span_rank >= 2 or not span.get("parent_id")):
            best, rank = span, span_rank
    if best is None:
        return None
    status = run_status(best)
    error = None
    if status not in ("ok", "unset") and best.get("status_message"):
        error = _text(best["status_message"])
    name = best["attributes"].get(ATTR_RUN_NAME, best["name"])
    if not isinstance(name, str):  # an attribute may hold any OTLP value
        name = json.dumps(name, ensure_ascii=False, default=str)
    return (_text(name), status, error, rank, project, trace_id, rank)


def _event_count(attributes: Mapping[str, Any]) -> int:
    count = 1 if attributes.get(ATTR_EVENT) else 0
    raw = attributes.get(ATTR_EVENTS)
    if isinstance(raw, str) and raw:
        try:
            listed = json.loads(raw)
        except (ValueError, RecursionError):
            listed = []
        count += len(listed) if isinstance(listed, list) else 0
    return count


def _iso(ns: int | None) -> str | None:
    # Rendered exactly as the trace document renders its timestamps.
    if not ns:
        return None
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
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
        started_ns = int(started)
    except (ValueError, UnicodeDecodeError):
        started_ns, trace_id = -1, ""
    # Out-of-range values would reach the database as an error, not as "no such page".
    if not 0 <= started_ns <= _MAX_NS or not _HEX32.match(trace_id):
        raise CursorError(f"cursor {cursor!r} is not one this server handed out")
    return started_ns, trace_id
