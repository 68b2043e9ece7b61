"""Finalising orphaned runs: the journal of a run whose process died becomes a normal trace.

The next AgentTrace process in the same local store — an agent's ``init()``, any ``agenttrace``
command — looks at ``<local_dir>/journal/``. A journal whose ``flock`` nobody holds belongs to a
process that is gone; the finaliser takes the lock itself (so of twenty processes starting at
once exactly one finalises each journal), rebuilds the run from it — status ``killed`` when the
run never ended — and then:

- writes ``traces/<trace_id>.json`` and moves ``last.json`` / ``last-failure.json`` to it unless
  a run that ended later holds them (:func:`agenttrace.exporters.local.publish`);
- if the run was recorded with an API key, puts the spans the backend had not acknowledged,
  plus the root span, in that key's spool bucket (the key itself is never on disk) and, when
  this process has that key, delivers the bucket now; otherwise the next process with the key
  or ``agenttrace flush`` does. Span ids are the recorded ones, so the backend de-duplicates
  anything sent twice;
- deletes the journal, still holding its lock.

A journal that cannot be read at all is set aside as ``<name>.unreadable`` with a warning, never
retried and never deleted; a torn or corrupt line is skipped with a warning naming its position.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from . import journal
from .local import publish

try:
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("agenttrace")

_BATCH = 512  # spans per spooled payload, as the live exporter batches them


@dataclass(frozen=True)
class Finalised:
    """One orphaned run, now a trace."""

    journal: str
    trace: str  # the trace document written
    trace_id: str
    name: str | None
    status: str
    events: int
    spooled: int  # spans put in the backend's spool (0: the run was recorded without a key)
    delivered: bool  # ...and delivered by this process


def finalise_orphans(
    local_dir: str,
    api_url: str | None = None,
    api_key: str | None = None,
    *,
    send: bool = True,
    say: Callable[[str], None] | None = None,
) -> list[Finalised]:
    """Finalise every journal in ``local_dir`` whose process is gone, oldest first.

    ``api_url``/``api_key``: this process's backend, to deliver a recovered run recorded with
    the same key (``send=False``: only spool it, as a replay does). Never raises.
    """
    say = say or _stderr
    done = []
    if not journal.supported():
        return done
    with suppress_instrumentation():  # our own work: nothing here is the agent's I/O
        for path in journal.journals(local_dir):
            try:
                result = _finalise(path, local_dir, api_url, api_key, send, say)
            except OSError as exc:  # a full disk, say: the next process tries again
                say(f"cannot finalise the journal {path} now ({exc}); it is kept")
                continue
            except Exception as exc:
                say(f"cannot finalise the journal {path} ({exc!r}); set it aside as .unreadable")
                logger.debug("agenttrace: finalising %s failed", path, exc_info=True)
                _set_aside(path)
                continue
            if result is not None:
                done.append(result)
                say(_summary(result))
    return done


def finalise_in_background(local_dir: str, *args: Any, **kwargs: Any) -> threading.Thread | None:
    """:func:`finalise_orphans` off the caller's path (an agent starting up). Cannot lose work:
    a journal is deleted only after its trace is safe, so a process that exits mid-way leaves
    it for the next one."""
    if not os.path.isdir(journal.journal_dir(local_dir)):
        return None  # the common case: nothing was ever killed here
    thread = threading.Thread(
        target=finalise_orphans,
        args=(local_dir, *args),
        kwargs=kwargs,
        name="agenttrace-finalise",
        daemon=True,
    )
    thread.start()
    return thread


def _finalise(
    path: str,
    local_dir: str,
    api_url: str | None,
    api_key: str | None,
    send: bool,
    say: Callable[[str], None],
) -> Finalised | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # finalised by someone else meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # its process is alive (or another finaliser has it right now)
        # The previous holder may have finalised and unlinked it while we opened it.
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return None
        except FileNotFoundError:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            try:
                recovered = journal.read(path, fh)
            except journal.JournalError as exc:
                say(f"{exc}; set it aside as {os.path.basename(path)}.unreadable")
                _set_aside(path)
                return None
        for problem in recovered.problems:
            say(problem)
        document = recovered.document()
        trace = publish(local_dir, document, ended_ns=recovered.last_write_ns)
        spooled, delivered = _to_backend(recovered, api_url, api_key, send, say)
        if spooled < 0:
            return None  # the spool refused it: keep the journal for the next process
        os.unlink(path)
    finally:
        os.close(fd)  # releases the lock; the journal is gone by then
    return Finalised(
        path,
        trace,
        recovered.trace_id,
        document["run"].get("name"),
        document["run"]["status"],
        len(document["events"]),
        spooled,
        delivered,
    )


def _set_aside(path: str) -> None:
    with contextlib.suppress(OSError):
        os.replace(path, path + ".unreadable")


# -- the backend's share ------------------------------------------------------------------------


def _to_backend(
    recovered: journal.Recovered,
    api_url: str | None,
    api_key: str | None,
    send: bool,
    say: Callable[[str], None],
) -> tuple[int, bool]:
    """Spool what the backend has not got; deliver it if we hold the key. (-1, False) when the
    spool cannot take it."""
    described = recovered.header.get("export")
    if not described:
        return 0, False
    from .backend import Sender, deliver_spool, encode
    from .spool import Spool, bucket_name, max_spool_bytes

    spool = Spool.from_description(described, max_spool_bytes())
    spans = list(otlp_spans(recovered))
    for start in range(0, len(spans), _BATCH):
        batch = spans[start : start + _BATCH]
        if not spool.write(encode(batch), len(batch)):
            return -1, False
    mine = (
        send
        and api_url
        and api_key
        and described.get("api_url") == api_url
        and bucket_name(api_url, api_key) == described.get("bucket")
    )
    if not mine:
        return len(spans), False
    assert api_url and api_key
    sender = Sender(api_url, api_key)
    try:
        own = Spool(described["spool"], api_url, api_key, max_spool_bytes())
        report = deliver_spool(own, sender)
    finally:
        sender.close()
    if report.failure is not None:
        say(
            f"could not deliver a recovered run to {api_url} ({report.failure.detail}); it stays "
            f"in the spool {own.directory} for the next run or `agenttrace flush`"
        )
    return len(spans), report.failure is None


def otlp_spans(recovered: journal.Recovered) -> Iterator[ReadableSpan]:
    """The spans the backend has not acknowledged, and the root span, as SDK spans."""
    resource = Resource(recovered.header.get("resource") or {})
    scope = recovered.header.get("scope") or [None, None]
    trace_id = int(recovered.trace_id, 16)
    root = recovered.root_record()
    for record in [*recovered.spans.values(), root]:
        if record["span_id"] in recovered.acked:
            continue
        name, version, events = recovered.otlp.get(record["span_id"], (scope[0], scope[1], None))
        yield _readable(record, trace_id, resource, name, version, events)


def _readable(
    record: dict[str, Any],
    trace_id: int,
    resource: Resource,
    scope: str | None,
    version: str | None,
    events: Any,
) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = record.get("parent_id")
    return ReadableSpan(
        name=record["name"],
        context=SpanContext(trace_id, int(record["span_id"], 16), False, flags),
        parent=SpanContext(trace_id, int(parent, 16), False, flags) if parent else None,
        resource=resource,
        attributes=record["attributes"],
        events=[Event(n, dict(a or {}), t) for n, t, a in events or ()],
        kind=SpanKind[record["kind"]],
        status=Status(StatusCode[record["status"].upper()], record.get("status_message")),
        start_time=record["start_ns"],
        end_time=record.get("end_ns"),
        instrumentation_scope=InstrumentationScope(scope or "agenttrace", version),
    )


# -- saying what happened -------------------------------------------------------------------------


def _summary(result: Finalised) -> str:
    line = (
        f"recovered run {result.name!r} ({result.status}, {result.events} events) from the "
        f"journal of a process that is gone → {result.trace}"
    )
    if result.spooled:
        line += (
            f"; {result.spooled} spans delivered to the backend"
            if result.delivered
            else f"; {result.spooled} spans spooled for the backend (sent by the next run with "
            "its API key, or `agenttrace flush`)"
        )
    return line


def _stderr(message: str) -> None:
    try:
        print(f"agenttrace: {message}", file=sys.stderr, flush=True)
    except Exception:  # a closed stderr must not turn finalising into an error
        pass
