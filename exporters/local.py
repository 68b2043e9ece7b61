"""The local trace store: the embedded default when no API key is set.

Collects the spans of each run as they end and, when the run's root span ends, writes the trace
document atomically to ``<dir>/traces/<trace_id>.json``, ``<dir>/last.json`` and, for a failed
run, ``<dir>/last-failure.json``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from agenttrace import _trace

logger = logging.getLogger("agenttrace")


def span_to_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished (already scrubbed) SDK span as the store's neutral record."""
    ctx = span.get_span_context()
    parent = span.parent
    return _trace.span_record(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span.name,
        kind=span.kind.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        status=span.status.status_code.name.lower(),
        status_message=span.status.description,
        attributes=dict(span.attributes or {}),
    )


def write_atomic(path: str, text: str | Callable[[TextIO], None]) -> None:
    """Write via a temporary file and rename; ``text`` may be a function writing to the file.
    The temporary name is not random on purpose: tempfile would draw entropy, which replay
    serves to the agent."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp"
    )
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            if callable(text):
                text(fh)
            else:
                fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _copy_of(source: str) -> Callable[[TextIO], None]:
    def copy(fh: TextIO) -> None:
        with open(source, encoding="utf-8") as src:
            shutil.copyfileobj(src, fh)

    return copy


class _Collector(SpanProcessor):
    def __init__(self, store: LocalStore) -> None:
        self._store = store

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._store._on_end(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class LocalStore:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.processor = _Collector(self)
        self._lock = threading.Lock()
        self._spans: dict[int, list[dict[str, Any] | ReadableSpan]] = {}
        self._runs: dict[int, Any] = {}  # trace_id -> RunHandle
        self._written: dict[int, str] = {}
        self.last_path: str | None = None
        self.last_failed = False
        self.last_events = 0

    def watch(self, run: Any) -> None:
        trace_id = run.span.get_span_context().trace_id
        with self._lock:
            self._runs[trace_id] = run
            self._spans.setdefault(trace_id, [])

    def add_record(self, trace_id: int, record: dict[str, Any]) -> None:
        """A span that never went through the SDK (a replayed call, see ``agenttrace.replay.span``)."""
        with self._lock:
            spans = self._spans.get(trace_id)
            if spans is not None:
                spans.append(record)

    def _on_end(self, span: ReadableSpan) -> None:
        trace_id = span.get_span_context().trace_id
        with self._lock:
            spans = self._spans.get(trace_id)
            if spans is None:
                return  # not one of our runs (the app's own traces)
            # Kept as is: converting waits for the write, off the agent's call path.
            spans.append(span)
            run = self._runs.get(trace_id)
            finished = (
                run is not None
                and span.get_span_context().span_id == run.span.get_span_context().span_id
            )
            late = trace_id in self._written
        if finished or late:
            try:
                self._write(trace_id)
            except Exception:
                logger.exception(
                    "agenttrace: could not write the local trace to %s", self.directory
                )

    def _records(self, trace_id: int) -> list[dict[str, Any]]:
        with self._lock:
            spans = self._spans[trace_id]
            for i, span in enumerate(spans):
                if not isinstance(span, dict):  # once: a late span's rewrite converts only it
                    spans[i] = span_to_record(span)
            return list(spans)

    def document(self, run: Any) -> dict[str, Any]:
        """The trace document of a run as it stands (still open: its events so far)."""
        trace_id = run.span.get_span_context().trace_id
        document = _trace.build_document(self._records(trace_id) if trace_id in self._spans else [])
        known = {e["seq"] for e in document["events"]}
        pending = [e for e in list(run.events) if e.get("seq") not in known]
        document["events"] = sorted(document["events"] + pending, key=lambda e: e["seq"])
        return document

    def _write(self, trace_id: int) -> None:
        spans = self._records(trace_id)
        with self._lock:
            run = self._runs[trace_id]
        if run.discard_if_empty and len(spans) <= 1 and not run.events:
            return  # nothing happened in the implicit run (explicit runs held the work)
        document = _trace.build_document(spans)
        path = os.path.join(self.directory, "traces", f"{document['trace_id']}.json")
        # Streamed to disk, then copied: the document as one string would multiply the peak
        # memory of a long run several times over.
        write_atomic(path, lambda fh: _trace.dump(document, fh))
        write_atomic(os.path.join(self.directory, "last.json"), _copy_of(path))
        failed = document["run"]["status"] == "error"
        if failed:
            write_atomic(os.path.join(self.directory, "last-failure.json"), _copy_of(path))
        with self._lock:
            self._written[trace_id] = path
            self.last_path, self.last_failed, self.last_events = (
                path,
                failed,
                len(document["events"]),
            )

    def announce(self) -> None:
        """One line on stderr saying where the trace went."""
        if self.last_path is None:
            return
        also = "last.json" + (", last-failure.json" if self.last_failed else "")
        sys.stderr.write(
            f"agenttrace: {self.last_events} events recorded → {self.last_path} (also {also})\n"
        )
        sys.stderr.flush()
