"""Where the viewer reads runs: a page of run summaries, and one run's trace document.

``RunSource`` is the whole interface. ``StoreRuns`` reads one project of the backend's database
(what a signed-in key sees); ``LocalRuns`` reads a local store directory (``traces/`` and
``replays/traces/``), any directory of trace files, or a single file. Both hand out the checked
trace document (``_trace.load_document``), the same one ``agenttrace show`` reads.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ... import _trace
from ..._cost import run_totals
from ..._genai import Usage
from ...errors import EventsFileError
from ..store import STATUSES, CursorError, SqlStore

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
# What a document of the right shape with the wrong values raises while it is checked or
# assembled (seq numbers that do not sort, span fields of the wrong type, JSON nested too deep).
_BAD_DOCUMENT = (EventsFileError, ValueError, KeyError, TypeError, AttributeError, RecursionError)
_T = TypeVar("_T")


@dataclass
class RunSummary:
    """One line of the runs list."""

    run_id: str  # what /runs/{run_id} takes
    trace_id: str
    name: str | None
    status: str
    started_at: str | None
    duration_ms: float | None
    error: str | None = None
    mode: str | None = None  # "record" or "replay"
    calls: int | None = None  # None: not computed (see note)
    usage: Usage | None = None
    cost_usd: float | None = None
    note: str | None = None  # why a figure is missing


@dataclass
class RunPage:
    runs: list[RunSummary]
    next_cursor: str | None
    skipped: list[str] = field(default_factory=list)  # files that could not be read, and why


class UnreadableRun(Exception):
    """A run that exists but cannot be read (a corrupt file); the message says what is wrong."""


class RunSource(Protocol):
    """Runs as the viewer reads them."""

    #: the statuses the runs list can be filtered by
    statuses: Sequence[str]

    def runs(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> RunPage:
        """Newest first. Raises ``CursorError`` for a cursor this source did not hand out."""
        ...

    def document(self, run_id: str) -> dict[str, Any] | None:
        """The run's checked trace document; None when there is no such run (for this reader).
        Raises ``UnreadableRun`` when the run exists and cannot be read."""
        ...


def summary_of(document: Mapping[str, Any], run_id: str) -> RunSummary:
    """The list line of a checked document, totals included."""
    run = document.get("run") or {}
    totals = run_totals(document.get("events") or (), _trace.parse_time(run.get("started_at")))
    return RunSummary(
        run_id=run_id,
        trace_id=str(document.get("trace_id") or ""),
        name=_text(run.get("name")),
        status=str(run.get("status") or "unset"),
        started_at=_text(run.get("started_at")),
        duration_ms=_trace.elapsed_ms(run.get("started_at"), run.get("ended_at")),
        error=_text(run.get("error")),
        mode=_text(run.get("mode")),
        calls=totals.calls,
        usage=totals.usage if totals.usage.reported() else None,
        cost_usd=totals.cost_usd,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class _Lru:
    """A small thread-safe LRU map (the viewer's threads share it)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], _T]) -> _T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: two threads may both build it, neither waits
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


# Documents are big (a long run holds tens of MB of bodies): only the last few are kept, enough
# for the clicks on one run's events; list totals are small and kept for many runs.
_DOCUMENTS = 4
_TOTALS = 4096


class StoreRuns:
    """One project of the backend's database."""

    statuses: Sequence[str] = STATUSES

    def __init__(self, store: SqlStore, project: str, cache: StoreCache) -> None:
        self._store = store
        self._project = project
        self._cache = cache

    def runs(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> RunPage:
        rows, next_cursor = self._store.list_traces(
            self._project, status=status, limit=limit, cursor=cursor
        )
        return RunPage([self._summary(row) for row in rows], next_cursor)

    def document(self, run_id: str) -> dict[str, Any] | None:
        if not _HEX32.match(run_id):
            return None
        row = self._store.trace_summary(self._project, run_id)
        if row is None:  # another project's trace looks exactly like a missing one
            return None
        return self._cache.documents.get(self._version(row), lambda: self._build(run_id))

    def _version(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        # Spans of a trace arrive over time; the counts and end change with every batch.
        keys = ("trace_id", "span_count", "event_count", "ended_at", "status")
        return (self._project, *(row[k] for k in keys))

    def _build(self, trace_id: str) -> dict[str, Any]:
        spans = self._store.trace_spans(self._project, trace_id)
        try:
            return _trace.load_document(_trace.build_document(spans), f"trace {trace_id}")[0]
        except _BAD_DOCUMENT as exc:
            raise UnreadableRun(
                f"trace {trace_id} cannot be assembled from its spans: {exc}"
            ) from None

    def _summary(self, row: Mapping[str, Any]) -> RunSummary:
        trace_id = row["trace_id"]
        listed = RunSummary(
            run_id=trace_id,
            trace_id=trace_id,
            name=row["name"],
            status=row["status"],
            started_at=row["started_at"],
            duration_ms=row["duration_ms"],
            error=row["error"],
        )
        if row["event_count"] > self._cache.max_list_events:
            listed.note = "a large run: its totals are on its page"
            return listed

        def totals() -> RunSummary | None:
            try:
                document = self.document(trace_id)
            except UnreadableRun:
                return None
            return summary_of(document, trace_id) if document is not None else None

        computed = self._cache.totals.get(self._version(row), totals)
        if computed is None:
            listed.note = "its events cannot be read"
            return listed
        listed.mode, listed.calls = computed.mode, computed.calls
        listed.usage, listed.cost_usd = computed.usage, computed.cost_usd
        return listed


class StoreCache:
    """What ``StoreRuns`` of every project share: recent documents and list totals."""

    def __init__(self, max_list_events: int = 20_000) -> None:
        #: runs with more events than this show no totals in the list (reading them all for
        #: one page would take seconds); their page has the totals
        self.max_list_events = max_list_events
        self.documents = _Lru(_DOCUMENTS)
        self.totals = _Lru(_TOTALS)


# -- the local store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    run_id: str
    path: str
    mtime_ns: int
    size: int

    @property
    def version(self) -> tuple[str, int, int]:
        return (self.path, self.mtime_ns, self.size)

    @property
    def order(self) -> tuple[int, str]:
        return (self.mtime_ns, self.run_id)


class LocalRuns:
    """Trace files on disk: a local store (``traces/`` and ``replays/traces/``), any directory
    of trace files (searched recursively, e.g. the pytest plugin's ``tests/traces/``), or one
    file. Newest first by when the file was written; a file that cannot be read is listed in
    ``RunPage.skipped`` with the reason."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._documents = _Lru(_DOCUMENTS)
        self._summaries = _Lru(_TOTALS)
        self._seen_statuses: set[str] = set()

    @property
    def statuses(self) -> Sequence[str]:
        return tuple(STATUSES) + tuple(sorted(self._seen_statuses - set(STATUSES)))

    def _scan(self) -> dict[str, _File]:
        if os.path.isfile(self.path):
            return {f.run_id: f for f in [self._file(self.path, file_run_id(self.path))] if f}
        store = os.path.join(self.path, "traces")
        if os.path.isdir(store):
            # A trace id is the file's name; recordings first, so they win a (never seen) clash.
            roots = [store, os.path.join(self.path, _trace.REPLAYS_DIR, "traces")]
            found: dict[str, _File] = {}
            for root in roots:
                for name in _listdir(root):
                    if name.endswith(".json") and not name.startswith("."):
                        entry = self._file(os.path.join(root, name), name[:-5])
                        if entry is not None:
                            found.setdefault(entry.run_id, entry)
            return found
        found = {}
        for directory, dirs, names in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                if name.endswith(".json") and not name.startswith("."):
                    full = os.path.join(directory, name)
                    relative = os.path.relpath(full, self.path)[:-5]
                    entry = self._file(full, relative.replace(os.sep, "~"))
                    if entry is not None:
                        found[entry.run_id] = entry
        return found

    @staticmethod
    def _file(path: str, run_id: str) -> _File | None:
        try:
            stat = os.stat(path)
        except OSError:  # gone since it was listed (a store being pruned or rewritten)
            return None
        return _File(run_id, path, stat.st_mtime_ns, stat.st_size)

    def _load(self, entry: _File) -> dict[str, Any]:
        def read() -> dict[str, Any] | str:
            try:
                return _trace.load_document(entry.path)[0]
            except EventsFileError as exc:
                return str(exc)  # remembered too: a corrupt file is not re-read every time
            except _BAD_DOCUMENT as exc:  # JSON of the right shape holding the wrong values
                return (
                    f"{entry.path}: not a trace this version can read ({type(exc).__name__}: {exc})"
                )

        loaded = self._documents.get(entry.version, read)
        if isinstance(loaded, str):
            raise UnreadableRun(loaded)
        return loaded

    def document(self, run_id: str) -> dict[str, Any] | None:
        entry = self._scan().get(run_id)  # looked up, never joined into a path
        return None if entry is None else self._load(entry)

    def _summary(self, entry: _File) -> RunSummary | str:
        def read() -> RunSummary | str:
            try:
                return summary_of(self._load(entry), entry.run_id)
            except UnreadableRun as exc:
                return str(exc)

        return self._summaries.get(entry.version, read)

    def runs(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> RunPage:
        files = sorted(self._scan().values(), key=lambda f: f.order, reverse=True)
        if cursor:
            after = _decode_cursor(cursor)
            files = [f for f in files if f.order < after]
        page: list[RunSummary] = []
        skipped: list[str] = []
        next_cursor = None
        for index, entry in enumerate(files):
            if len(page) == limit:
                next_cursor = _encode_cursor(files[index - 1].order)
                break
            summary = self._summary(entry)
            if isinstance(summary, str):
                skipped.append(summary)
                continue
            self._seen_statuses.add(summary.status)
            if status is None or summary.status == status:
                page.append(summary)
        return RunPage(page, next_cursor, skipped)


def file_run_id(path: str | os.PathLike[str]) -> str:
    """The run id of a single trace file: its name without ``.json``."""
    name = os.path.basename(os.fspath(path))
    return name[:-5] if name.endswith(".json") else name


def _listdir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _encode_cursor(order: tuple[int, str]) -> str:
    raw = f"{order[0]}:{order[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        mtime, run_id = raw.split(":", 1)
        return int(mtime), run_id
    except (ValueError, UnicodeDecodeError):
        raise CursorError(f"cursor {cursor!r} is not one this viewer handed out") from None
