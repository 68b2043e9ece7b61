"""The per-run journal: what a run has completed, handed to the operating system as it happens.

A recording run's trace is written when the run ends. A process that dies first (``os._exit``,
SIGKILL, the OOM killer) would lose it all, so each run also has a journal,
``<local_dir>/journal/<trace_id>.jsonl``, and every finished span of the run (an HTTP call's span
carries its event), every event logged in it (entropy, DNS) and its wall-clock reads are
appended to it *before the intercepted call returns to the agent*: one ``os.write`` of one line to
a file kept open, no fsync (``journal_fsync="always"`` adds one). The kernel has the bytes, so a
killed *process* loses nothing; a *machine* that loses power can lose what the kernel had not yet
written back (seconds).

The journal sits behind the scrubbing processor, so it receives spans already scrubbed (events
are redacted before they reach a span; step payloads at the source). It holds nothing per event
in memory. While the run is live its process holds an ``flock`` on the file: a journal nobody
holds belongs to a dead process, and the next AgentTrace process turns it into a trace
(``exporters.recovery``). A run that ends normally has its journal deleted once its trace is
safe: written by the local store, or acknowledged (or spooled) by the backend exporter.

Lines (one JSON value each; the first is the header object, the others lists):

- header ``{"journal": 1, "pid", "trace_id", "span_id", "name", "start_ns", "attributes",
  "scope", "resource", "export"}`` — the run's root span as it started, where its spans go;
- ``["span", clock, span_id, parent_id, name, kind, start_ns, end_ns, status, message,
  attributes, scope, version, span_events, event?]`` — a finished span; the I/O event it carries
  (``agenttrace.event``) is spliced in as JSON rather than escaped into a string;
- ``["start", clock, ...the same, end_ns null...]`` — a step (any non-CLIENT span) that began;
- ``["event", clock, event]`` — an event logged in the run (``Runs.add_event``);
- ``["exit", clock, how]`` — the process began ending the run (a signal, ``os._exit``);
- ``["ack", null, [span_id, ...]]`` — spans the backend acknowledged.

``clock`` is null or ``{flow: [ns, ...]}``: the run's wall-clock reads since the previous line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from .. import _trace
from .._runs import RunHandle, clock_event
from .._scrub_spans import scrub_attributes

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, so no way to tell a dead process
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("agenttrace")

VERSION = 1
DIRECTORY = "journal"
SUFFIX = ".jsonl"
FSYNC_POLICIES = ("never", "always")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_CLIENT = SpanKind.CLIENT


def journal_dir(local_dir: str) -> str:
    return os.path.join(local_dir, DIRECTORY)


def supported() -> bool:
    """Whether this platform can tell a live journal from a dead one (flock)."""
    return fcntl is not None


# -- writing ------------------------------------------------------------------------------------


class _RunFile:
    """The open journal of one live run. Writes and the close share a lock: a descriptor closed
    under a writer could be reused by another file before the write lands."""

    __slots__ = ("fd", "path", "run", "root_id", "lock", "clock_done", "ended", "closed")

    def __init__(self, fd: int, path: str, run: RunHandle, root_id: int) -> None:
        self.fd = fd
        self.path = path
        self.run = run
        self.root_id = root_id
        self.lock = threading.Lock()
        self.clock_done: dict[str, int] = {}  # per flow: reads already journaled
        self.ended = False
        self.closed = False

    def clock_since(self) -> dict[str, list[int]] | None:
        """The run's wall-clock reads not journaled yet (call with the lock held)."""
        clock = self.run.clock
        if not clock:
            return None
        fresh: dict[str, list[int]] = {}
        done = self.clock_done
        for flow, reads in list(clock.items()):
            count = len(reads)
            start = done.get(flow, 0)
            if count > start:
                fresh[flow] = reads[start:count]
                done[flow] = count
        return fresh or None


class Journal(SpanProcessor):
    """Journals the runs of one recording session (a span processor and a ``Runs`` watcher).

    ``settled(trace_id)``: whether the trace of an ended run is safe elsewhere (the local store
    wrote it), so its journal can go. With ``acknowledged=True`` (the backend exporter) an ended
    run's journal goes once :meth:`delivered` reports its root span.
    """

    def __init__(
        self,
        local_dir: str,
        redactor: Any,
        *,
        fsync: bool = False,
        resource: Mapping[str, Any] | None = None,
        export: Mapping[str, Any] | None = None,
        settled: Callable[[int], bool] | None = None,
        acknowledged: bool = False,
    ) -> None:
        self.directory = journal_dir(local_dir)
        self._redactor = redactor
        self._fsync = fsync
        self._resource = dict(resource or {})
        # where the run's spans go when an API key is set (the spool bucket, never the key)
        self.export = dict(export) if export else None
        self._settled = settled
        self._acknowledged = acknowledged
        self._files: dict[int, _RunFile] = {}  # trace_id -> file; get/set/pop are atomic
        self._warned = False
        self._clean_names: set[str] = set()
        self._disabled = not supported()
        weak_self = weakref.ref(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (j := weak_self()) and j._forget())

    # -- Runs: a run opens, an event is logged ---------------------------------------------------

    def watch(self, run: RunHandle) -> None:
        """A run opened: create its journal (locked before it gets its name) and write the
        header, then the events it took over from before it opened."""
        if self._disabled or not run.span.is_recording():
            return
        try:
            file = self._create(run)
        except OSError as exc:
            self._warn(
                f"cannot keep a journal in {self.directory} ({exc}); a killed process "
                "will lose this run"
            )
            return
        self._files[run.span.get_span_context().trace_id] = file
        for event in list(run.events):  # registered first: a concurrent event may come twice
            self._write(file, ["event", None, event])

    def _create(self, run: RunHandle) -> _RunFile:
        ctx = run.span.get_span_context()
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, f"{ctx.trace_id:032x}{SUFFIX}")
        temporary = os.path.join(self.directory, f".{ctx.trace_id:032x}.{os.getpid()}.new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            span: Any = run.span
            name, attributes = self._clean(span)
            scope = span.instrumentation_scope
            header = {
                "journal": VERSION,
                "pid": os.getpid(),
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "name": name,
                "start_ns": span.start_time,
                "attributes": attributes,
                "scope": [scope.name, scope.version] if scope is not None else None,
                "resource": self._resource,
                "export": self.export,
            }
            _write_all(fd, (_dumps(header) + "\n").encode("utf-8", "surrogatepass"))
            if self._fsync:
                os.fsync(fd)
            # Finalisers only look at complete names: this one is locked and has its header.
            os.replace(temporary, final)
            if self._fsync:
                _fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return _RunFile(fd, final, run, ctx.span_id)

    def event(self, run: RunHandle, event: dict[str, Any]) -> None:
        file = self._files.get(run.span.get_span_context().trace_id)
        if file is not None:
            self._write(file, ["event", None, event])

    # -- SpanProcessor ---------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # A step still open when the process dies is where the agent was: journal its start.
        # (A CLIENT span only matters once it ended with its event.)
        if span.kind is _CLIENT:
            return
        file = self._files.get(span.context.trace_id)
        if file is None or span.context.span_id == file.root_id:
            return
        try:
            name, attributes = self._clean(span)
            self._write(
                file,
                [
                    "start",
                    None,
                    *_identity(span),
                    name,
                    span.kind.value,
                    span.start_time,
                    None,
                    0,
                    None,
                    attributes,
                    *_scope(span),
                    None,
                ],
            )
        except Exception:
            logger.exception("agenttrace: could not journal the start of span %r", span.name)

    def on_end(self, span: ReadableSpan) -> None:
        file = self._files.get(span.context.trace_id)
        if file is None:
            return
        try:
            root = span.context.span_id == file.root_id
            self._write(file, span_line(span, drop=_trace.ATTR_EVENTS if root else None))
            if root:
                file.ended = True
                if self._safe(file):
                    self._release(file)
        except Exception:
            logger.exception("agenttrace: could not journal span %r", span.name)

    def shutdown(self) -> None:
        """The session stops (its exporters are done): an ended run whose trace is safe loses
        its journal; any other journal stays for the next process to finalise."""
        for file in list(self._files.values()):
            if self._safe(file):
                self._release(file)
            else:
                self._close(file)

    def _safe(self, file: _RunFile) -> bool:
        """Whether a run's trace is safe without its journal (with the backend, that is for
        :meth:`delivered` to say)."""
        if self._acknowledged:
            return False
        if self._settled is None:
            return file.ended
        return self._settled(file.run.span.get_span_context().trace_id)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- the backend exporter and the exit paths --------------------------------------------------

    def delivered(self, spans: Sequence[ReadableSpan]) -> None:
        """The backend exporter is done with these spans (sent, or spooled to disk)."""
        acked: dict[int, list[str]] = {}
        roots: list[_RunFile] = []
        for span in spans:
            ctx = span.context
            file = self._files.get(ctx.trace_id)
            if file is None:
                continue
            if ctx.span_id == file.root_id:
                roots.append(file)
            else:
                acked.setdefault(ctx.trace_id, []).append(f"{ctx.span_id:016x}")
        for trace_id, ids in acked.items():
            file = self._files.get(trace_id)
            if file is not None:
                self._write(file, ["ack", None, ids], clock=False)
        for file in roots:
            self._release(file)

    def note_exit(self, how: Mapping[str, Any]) -> None:
        """The process is ending its runs (a signal, ``os._exit``): say so first, in case it
        dies before they are written."""
        for file in list(self._files.values()):
            self._write(file, ["exit", None, dict(how)])

    # -- internals -------------------------------------------------------------------------------

    def _clean(self, span: Any) -> tuple[str, dict[str, Any]]:
        """Name and attributes of a live span, scrubbed as the scrubbing processor will scrub
        them when it ends (on_start and the header come before that)."""
        attributes = _attributes_of(span)
        scrubbed, _ = scrub_attributes(attributes, self._redactor)
        name = span.name
        if name not in self._clean_names:  # step names recur: scrub each once
            clean = self._redactor.text(name)
            if clean != name:
                return clean, scrubbed if scrubbed is not None else attributes
            if len(self._clean_names) > 10000:
                self._clean_names.clear()
            self._clean_names.add(name)
        return name, scrubbed if scrubbed is not None else attributes

    def _write(self, file: _RunFile, line: list[Any] | tuple[str, str], clock: bool = True) -> None:
        """Append one line (``span_line``'s parts for a finished span)."""
        with file.lock:
            if file.closed:
                return
            try:
                fresh = file.clock_since() if clock else None
                if isinstance(line, tuple):  # a finished span, encoded off the lock
                    head, raw = line
                    clock_text = _dumps(fresh) if fresh else "null"
                    text = "".join(('["span",', clock_text, ",", head, raw, "]\n"))
                else:
                    line[1] = fresh
                    text = _dumps(line) + "\n"
                _write_all(file.fd, text.encode("utf-8", "surrogatepass"))
                if self._fsync:
                    os.fsync(file.fd)
            except OSError as exc:
                file.closed = True  # keep what is there; stop writing to a failing file
                os.close(file.fd)
                self._warn(
                    f"cannot write the journal {file.path} ({exc}); a killed process "
                    "will lose the rest of this run"
                )

    def _release(self, file: _RunFile) -> None:
        """The run's trace is safe: delete its journal (unlinked while still locked)."""
        with file.lock:
            if file.closed:
                return
            file.closed = True
            with contextlib.suppress(OSError):
                os.unlink(file.path)
            os.close(file.fd)
        self._files.pop(file.run.span.get_span_context().trace_id, None)

    def _close(self, file: _RunFile) -> None:
        with file.lock:
            if not file.closed:
                file.closed = True
                os.close(file.fd)
        self._files.pop(file.run.span.get_span_context().trace_id, None)

    def _forget(self) -> None:
        # In a forked child: the runs are the parent's. Closing our copies of the descriptors
        # keeps the parent's locks (flock belongs to the open file, which the parent still has).
        files, self._files = self._files, {}
        self._disabled = True
        for file in files.values():
            with contextlib.suppress(OSError):
                os.close(file.fd)

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("agenttrace: %s", message)


def _identity(span: ReadableSpan) -> tuple[int, int | None]:
    parent = span.parent
    return span.context.span_id, parent.span_id if parent is not None else None


def _scope(span: ReadableSpan) -> tuple[str | None, str | None]:
    scope = span.instrumentation_scope
    return (scope.name, scope.version) if scope is not None else (None, None)


def _attributes_of(span: ReadableSpan) -> dict[str, Any]:
    # ``span.attributes`` is a read-only view over BoundedAttributes, which copies key by key
    # under a lock (~3 µs); its plain dict is what we want to copy, when it is there.
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return dict(inner) if isinstance(inner, dict) else dict(span.attributes or {})


def span_line(span: ReadableSpan, drop: str | None = None) -> tuple[str, str]:
    """A finished span's journal line after ``["span",clock,``, without its closing bracket,
    in two parts: the span's fields, and its event (``,{...}``) or nothing."""
    attributes = _attributes_of(span)
    raw = attributes.pop(_trace.ATTR_EVENT, None)
    if drop is not None:
        attributes.pop(drop, None)
    status = span.status
    events = span.events
    text = _dumps(
        [
            *_identity(span),
            span.name,
            span.kind.value,
            span.start_time,
            span.end_time,
            status.status_code.value,
            status.description,
            attributes,
            *_scope(span),
            [[e.name, e.timestamp, dict(e.attributes or {})] for e in events] if events else None,
        ]
    )
    # The event is JSON already (dumps_compact: no newline in it): spliced, not re-escaped.
    return text[1:-1], ("," + raw) if isinstance(raw, str) and raw else ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ------------------------------------------------------------------------------------


class JournalError(Exception):
    """A journal that cannot be turned into a trace at all (no usable header)."""


@dataclass
class Recovered:
    """A run as far as its journal got: span records, events, clock reads, how it ended."""

    path: str
    header: dict[str, Any]
    last_write_ns: int  # when the journal was last appended to: when its process stopped
    spans: dict[str, dict[str, Any]] = field(default_factory=dict)  # span_id -> span record
    otlp: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)  # scope, version, events
    events: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> event
    clock: dict[str, list[int]] = field(default_factory=dict)
    root: dict[str, Any] | None = None  # the root span's record, when the run ended
    exit: dict[str, Any] | None = None
    acked: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def trace_id(self) -> str:
        return str(self.header["trace_id"])

    @property
    def root_id(self) -> str:
        return str(self.header["span_id"])

    @property
    def killed(self) -> bool:
        """The run never ended: its process died first."""
        return self.root is None

    def all_events(self) -> list[dict[str, Any]]:
        """The run's own events (those on its root span), its clock reads included."""
        events = [self.events[k] for k in sorted(self.events)]
        if self.clock and not any(e.get("kind") == "clock" for e in events):
            # numbered after everything the run did, as the run's end would have numbered it
            seqs = [*self.events, 0]
            seqs += [s["attributes"].get(_trace.ATTR_SEQ) or 0 for s in self.spans.values()]
            events.append(clock_event(max(int(s) for s in seqs) + 1, self.clock))
        return events

    def root_record(self) -> dict[str, Any]:
        """The root span: as it ended, or as a killed run leaves it (ended when the journal was
        last written, status ``killed``)."""
        events = self.all_events()
        if self.root is not None:
            root = dict(self.root, attributes=dict(self.root["attributes"]))
        else:
            how = self.exit or {}
            attributes = dict(self.header.get("attributes") or {})
            attributes[_trace.ATTR_RUN_STATUS] = "killed"
            if how:
                attributes[_trace.ATTR_RUN_EXIT] = _trace.dumps_compact(how)
            root = _trace.span_record(
                trace_id=self.trace_id,
                span_id=self.root_id,
                parent_id=None,
                name=str(self.header.get("name") or ""),
                kind="INTERNAL",
                start_ns=int(self.header.get("start_ns") or 0),
                end_ns=max(self.last_write_ns, int(self.header.get("start_ns") or 0)),
                status="error",
                status_message=_trace.ending_message("killed", how),
                attributes=attributes,
            )
        if events:
            root["attributes"][_trace.ATTR_EVENTS] = _trace.dumps_compact(events)
        return root

    def records(self) -> list[dict[str, Any]]:
        """Every span record of the run, the root included (what ``build_document`` takes)."""
        return [*(s for k, s in self.spans.items() if k != self.root_id), self.root_record()]

    def document(self) -> dict[str, Any]:
        return _trace.build_document(self.records())


def read(path: str, fh: Any = None) -> Recovered:
    """Read a journal (``fh``: an open binary file on it). A torn last line (the process died
    mid-write) or a corrupt one is skipped and described in ``problems`` with its position."""
    own = fh is None
    if own:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        fh.seek(0)
        written = os.fstat(fh.fileno()).st_mtime_ns
        lines = _lines(fh, path)
        header = _header(path, next(lines, None))
        recovered = Recovered(path, header, written)
        trace_id = recovered.trace_id
        for entry in lines:
            if isinstance(entry, str):
                recovered.problems.append(entry)
                continue
            try:
                _apply(recovered, trace_id, entry)
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                recovered.problems.append(
                    f"an entry of {path} is not one AgentTrace wrote ({exc!r}); skipped"
                )
        return recovered
    finally:
        if own:
            fh.close()


def _lines(fh: Any, path: str) -> Iterator[Any]:
    """Each line parsed, or a string describing why it was skipped."""
    offset = 0
    for number, raw in enumerate(fh, 1):
        at = offset
        offset += len(raw)
        if not raw.endswith(b"\n"):
            yield (
                f"{path}: line {number} (byte {at}) is incomplete ({len(raw)} bytes): the process "
                "died while writing it; the run is recovered up to the entry before it"
            )
            return
        try:
            yield json.loads(raw.decode("utf-8", "surrogatepass"))
        except ValueError:
            yield f"{path}: line {number} (byte {at}) is not a journal entry (corrupt); skipped it"


def _header(path: str, first: Any) -> dict[str, Any]:
    if isinstance(first, str):
        raise JournalError(first.replace("skipped it", "it should be the journal's header"))
    if not isinstance(first, dict) or not isinstance(first.get("journal"), int):
        raise JournalError(f"{path}: empty, or its first line is not a journal header")
    if first["journal"] > VERSION:
        raise JournalError(
            f"{path}: journal format {first['journal']} is newer than this AgentTrace "
            f"({VERSION}); finalise it with a newer version"
        )
    for key in ("trace_id", "span_id"):
        if not isinstance(first.get(key), str):
            raise JournalError(f"{path}: the header has no {key}")
    return first


def _apply(recovered: Recovered, trace_id: str, entry: list[Any]) -> None:
    tag, clock = entry[0], entry[1]
    if clock:
        for flow, reads in clock.items():
            recovered.clock.setdefault(flow, []).extend(int(r) for r in reads)
    if tag in ("span", "start"):
        span_id = f"{int(entry[2]):016x}"
        if tag == "start" and span_id in recovered.spans:
            return  # ended already (lines of two threads can land out of order)
        attributes = dict(entry[10])
        if len(entry) > 14:
            attributes[_trace.ATTR_EVENT] = _trace.dumps_compact(entry[14])
        record = _trace.span_record(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=f"{int(entry[3]):016x}" if entry[3] is not None else None,
            name=str(entry[4]),
            kind=SpanKind(int(entry[5])).name,
            start_ns=int(entry[6] or 0),
            end_ns=int(entry[7]) if entry[7] else None,
            status=StatusCode(int(entry[8])).name.lower(),
            status_message=entry[9],
            attributes=attributes,
        )
        if span_id == recovered.root_id:
            recovered.root = record
        else:
            recovered.spans[span_id] = record
        recovered.otlp[span_id] = (entry[11], entry[12], entry[13])
    elif tag == "event":
        event = entry[2]
        recovered.events[int(event["seq"])] = event
    elif tag == "exit":
        recovered.exit = dict(entry[2])
    elif tag == "ack":
        recovered.acked.update(str(s) for s in entry[2])
    else:
        raise ValueError(f"unknown entry {tag!r}")


def journals(local_dir: str) -> list[str]:
    """The journals under a local store, oldest first (by last write)."""
    directory = journal_dir(local_dir)
    found = []
    try:
        scan = list(os.scandir(directory))
    except OSError:  # none yet (the usual case), or unreadable: nothing we can finalise
        return []
    for item in scan:
        if item.name.endswith(SUFFIX) and not item.name.startswith("."):
            with contextlib.suppress(OSError):
                found.append((item.stat().st_mtime_ns, item.path))
    return [path for _, path in sorted(found)]
