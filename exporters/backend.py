"""Export to the AgentTrace backend: OTLP/HTTP protobuf + gzip, never blocking, never losing a batch.

The agent thread only appends to a bounded queue (``on_end`` is O(1)). One worker thread
encodes batches and posts them with retries (backoff, Retry-After). A batch that still fails
goes to the disk spool (``spool.py``); the spool is delivered by a background thread of the next
process, after the backend recovers, or by ``agenttrace flush``. At shutdown the worker gets
``AGENTTRACE_EXPORT_TIMEOUT`` seconds; whatever is left then is spooled, so a dead backend never
holds the agent's exit longer than that.

All sending runs with OpenTelemetry instrumentation suppressed: our own HTTP traffic must never
be recorded as agent I/O.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import gzip
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .._config import Settings, mask_key
from ..errors import ConfigError
from ..governance.hook import exempt_thread
from .spool import Spool, default_spool_dir, max_spool_bytes

DEFAULT_EXPORT_TIMEOUT = 5.0
TRACES_PATH = "/v1/traces"

Done = Callable[[Sequence[ReadableSpan]], None]


@dataclass(frozen=True)
class Tuning:
    """Knobs of the processor; the defaults suit an agent process."""

    export_timeout: float = DEFAULT_EXPORT_TIMEOUT  # shutdown budget, seconds
    max_queue: int = 4096  # spans held in memory
    batch_size: int = 512
    schedule_delay: float = 1.0  # seconds a partial batch may wait
    request_timeout: float = 10.0  # one HTTP request
    retry_window: float = 15.0  # how long one batch is retried before it is spooled
    retry_window_at_exit: float = 1.0  # the same once shutdown began (a dead backend costs ~this)
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    cooldown: float = 5.0  # after spooling, send straight to the spool this long (doubling)
    max_cooldown: float = 120.0


def export_timeout_from_env() -> float:
    """``AGENTTRACE_EXPORT_TIMEOUT`` seconds (default 5)."""
    raw = os.environ.get("AGENTTRACE_EXPORT_TIMEOUT")
    if not raw:
        return DEFAULT_EXPORT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(
            f"AGENTTRACE_EXPORT_TIMEOUT={raw!r} (from environment) must be a number of seconds >= 0"
        )
    return value


def backend_processor(
    settings: Settings, done: Done | None = None, **tuning: Any
) -> BackendSpanProcessor:
    """The span processor the runtime adds to the TracerProvider when an API key is set.

    Also starts delivering what earlier processes spooled for this key, in the background.
    ``done`` is told of every batch the processor is through with (see ``BackendSpanProcessor``).
    """
    if not settings.api_key:
        raise ConfigError("backend export needs an API key (api_key= or AGENTTRACE_API_KEY)")
    tuning.setdefault("export_timeout", export_timeout_from_env())
    spool = Spool(default_spool_dir(), settings.api_url, settings.api_key, max_spool_bytes())
    return BackendSpanProcessor(
        settings.api_url, settings.api_key, spool, Tuning(**tuning), done=done
    )


# -- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok" | "retry" | "auth" | "endpoint" | "too_large" | "reject"
    detail: str = ""
    retry_after: float | None = None
    status: int | None = None


class Sender:
    """POSTs one gzip OTLP payload and says what to do next. Not thread-safe: one per thread."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self.api_url = api_url
        self.endpoint = api_url.rstrip("/") + TRACES_PATH
        self.key_prefix = mask_key(api_key)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "User-Agent": "agenttrace-exporter",
        }
        self._session = requests.Session()

    def post(self, payload: bytes, timeout: float) -> Outcome:
        timeout = max(timeout, 0.05)
        try:
            response = self._session.post(
                self.endpoint,
                data=payload,
                headers=self._headers,
                timeout=(min(timeout, 5.0), timeout),
            )
        except requests.RequestException as exc:
            return Outcome("retry", f"{type(exc).__name__} reaching {self.endpoint}")
        status = response.status_code
        if 200 <= status < 300:
            return Outcome("ok", status=status)
        detail = f"HTTP {status}: {_server_message(response)}"
        if status in (401, 403):
            return Outcome("auth", detail, status=status)
        if status in (404, 405):
            return Outcome(
                "endpoint", detail, status=status
            )  # api_url is not an AgentTrace backend
        if status == 413:
            return Outcome("too_large", detail, status=status)
        if status in (408, 429) or status >= 500:
            return Outcome(
                "retry", detail, _retry_after(response.headers.get("Retry-After")), status
            )
        return Outcome("reject", detail, status=status)

    def close(self) -> None:
        self._session.close()


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return " ".join(str(message).split())[:200] or response.reason or ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """Spans (already scrubbed, see ``agenttrace._scrub_spans``) as one gzip OTLP protobuf
    request body."""
    return gzip.compress(encode_spans(spans).SerializePartialToString(), compresslevel=5)


def split_payload(payload: bytes) -> list[bytes]:
    """Halve a payload the server found too large (empty list if it holds a single span)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(gzip.decompress(payload))
    located = [
        (r, s, span)
        for r, resource_spans in enumerate(request.resource_spans)
        for s, scope_spans in enumerate(resource_spans.scope_spans)
        for span in scope_spans.spans
    ]
    if len(located) < 2:
        return []
    halves = []
    for part in (located[: len(located) // 2], located[len(located) // 2 :]):
        out = ExportTraceServiceRequest()
        built: dict[tuple[int, int], Any] = {}
        resources: dict[int, Any] = {}
        for r, s, span in part:
            if r not in resources:
                resources[r] = out.resource_spans.add()
                resources[r].resource.CopyFrom(request.resource_spans[r].resource)
                resources[r].schema_url = request.resource_spans[r].schema_url
            if (r, s) not in built:
                scope = request.resource_spans[r].scope_spans[s]
                built[(r, s)] = resources[r].scope_spans.add()
                built[(r, s)].scope.CopyFrom(scope.scope)
                built[(r, s)].schema_url = scope.schema_url
            built[(r, s)].spans.add().CopyFrom(span)
        halves.append(gzip.compress(out.SerializePartialToString(), compresslevel=5))
    return halves


def span_count(payload: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(gzip.decompress(payload))
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


# -- delivering the spool ---------------------------------------------------------------------


@dataclass
class SpoolReport:
    delivered_batches: int = 0
    delivered_spans: int = 0
    dropped_spans: int = 0
    remaining_batches: int = 0
    remaining_spans: int = 0
    failure: Outcome | None = None


def deliver_spool(
    spool: Spool, sender: Sender, *, timeout: float = 10.0, stop: threading.Event | None = None
) -> SpoolReport:
    """Send spooled payloads oldest first; stop at the first failure that retrying now won't fix."""
    report = SpoolReport()
    with suppress_instrumentation():
        for entry in spool.pending():
            if report.failure is not None or (stop is not None and stop.is_set()):
                report.remaining_batches += 1
                report.remaining_spans += entry.spans
                continue
            with spool.claim(entry) as payload:
                if payload is None:
                    continue  # another process has it
                outcome = _deliver_splitting(sender, payload, timeout, spool)
                if outcome.kind == "ok":
                    report.delivered_batches += 1
                    report.delivered_spans += entry.spans
                    spool.remove(entry)
                elif outcome.kind == "reject":
                    report.dropped_spans += entry.spans
                    _warn(
                        f"the backend refused a spooled batch of {entry.spans} spans ({outcome.detail}); dropped it"
                    )
                    spool.remove(entry)
                else:
                    report.failure = outcome
                    report.remaining_batches += 1
                    report.remaining_spans += entry.spans
    return report


def _deliver_splitting(sender: Sender, payload: bytes, timeout: float, spool: Spool) -> Outcome:
    """Post; on 413 post the halves instead, re-spooling a half that cannot go now."""
    outcome = sender.post(payload, timeout)
    if outcome.kind != "too_large":
        return outcome
    halves = split_payload(payload)
    if not halves:
        return Outcome("reject", outcome.detail + " (a single span is over the server's limit)")
    for half in halves:
        result = _deliver_splitting(sender, half, timeout, spool)
        if result.kind not in ("ok", "reject"):
            # Nothing of this half went through; it becomes its own spool entry.
            spool.write(half, span_count(half))
    return Outcome("ok")


# -- the processor ------------------------------------------------------------------------------


class BackendSpanProcessor(SpanProcessor):
    """Batching, retrying, spooling span processor for the AgentTrace backend.

    ``done(spans)`` is called (on the worker thread) for each batch the processor is through
    with: acknowledged by the backend, spooled to disk, or refused for good. The run journal
    uses it to know what a finaliser no longer needs to send.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        spool: Spool,
        tuning: Tuning | None = None,
        done: Done | None = None,
    ) -> None:
        self.tuning = tuning or Tuning()
        self.spool = spool
        self._done = done
        self._api_url = api_url
        self._api_key = api_key
        self._init_state()
        weak_self = weakref.ref(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (p := weak_self()) and p._init_state())

    def _init_state(self) -> None:
        # Also runs in a forked child: the parent's threads do not exist there.
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_waiters: list[threading.Event] = []
        self._deadline: float | None = None
        self._abandoned = False
        self._in_flight: tuple[bytes, int, list[ReadableSpan]] | None = None
        self._dropped = 0
        self._sent = 0  # spans the backend acknowledged, and spans spooled: the exit summary
        self._spooled = 0
        self._encode_warned = False
        self._stopped_reason: str | None = None  # auth/config failure: spool, never send again
        self._circuit_until = 0.0
        self._cooldown = self.tuning.cooldown
        self._spooled_since_success = False
        self._drainer: threading.Thread | None = None
        self._sender = Sender(self._api_url, self._api_key)
        self._worker = threading.Thread(target=self._run, name="agenttrace-export", daemon=True)
        exempt_thread(self._worker)  # by identity: a replay's gate is not for our own export
        self._worker.start()
        self._start_drainer()

    # -- SpanProcessor ----------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        # Runs on the agent's thread: O(1), no I/O, no locks held for long.
        if not span.context.trace_flags.sampled or self._stopping.is_set():
            return
        if len(self._queue) >= self.tuning.max_queue:
            self._dropped += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self.tuning.batch_size:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if not self._worker.is_alive():
            return not self._queue
        done = threading.Event()
        with self._lock:
            self._flush_waiters.append(done)
        self._wake.set()
        return done.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._stopping.is_set():
            return
        self._deadline = time.monotonic() + self.tuning.export_timeout
        self._stopping.set()
        self._wake.set()
        self._worker.join(max(0.0, self._deadline - time.monotonic()))
        if self._worker.is_alive():
            # The backend holds the worker past the bound: take what is left to disk ourselves.
            with self._lock:
                self._abandoned = True
                in_flight, self._in_flight = self._in_flight, None
                leftovers = self._take(len(self._queue))
            with suppress_instrumentation():
                if in_flight is not None and self._spool(in_flight[0], in_flight[1]):
                    self._through(in_flight[2])
                payload = self._encode(leftovers) if leftovers else None
                if payload and self._spool(payload, len(leftovers)):
                    self._through(leftovers)
        if self._dropped:
            _warn(
                f"{self._dropped} spans were dropped because the export queue was full "
                f"({self.tuning.max_queue} spans)"
            )
        self._summarise()

    def _summarise(self) -> None:
        """The one line at exit saying where the trace went (a refused key or URL has said it)."""
        if self._stopped_reason is not None:
            return
        parts = []
        if self._sent:
            parts.append(f"{self._sent} spans sent to {self._api_url}")
        if self._spooled:
            parts.append(
                f"{self._spooled} spans spooled to {self.spool.directory} (delivered by the next "
                "run or `agenttrace flush`)"
            )
        if parts:
            print(f"agenttrace: {'; '.join(parts)}", file=sys.stderr, flush=True)

    # -- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        with suppress_instrumentation():
            while True:
                self._wake.wait(self.tuning.schedule_delay)
                self._wake.clear()
                stopping = self._stopping.is_set()
                while self._queue:
                    with self._lock:
                        if self._abandoned:
                            return
                        batch = self._take(self.tuning.batch_size)
                        payload = self._encode(batch)
                        self._in_flight = (payload, len(batch), batch) if payload else None
                    if payload:
                        try:
                            self._deliver(payload, len(batch))
                        except Exception as exc:  # the worker must outlive any one batch
                            _warn(f"exporting a batch failed unexpectedly ({exc!r}); spooling it")
                            with contextlib.suppress(Exception):
                                self._keep(payload, len(batch))
                    with self._lock:
                        if self._abandoned:
                            return
                        self._in_flight = None
                    if payload:
                        self._through(batch)
                    if (
                        not stopping
                        and not self._flush_waiters
                        and len(self._queue) < self.tuning.batch_size
                    ):
                        break  # a partial batch waits for the schedule delay
                with self._lock:
                    if self._queue and (self._flush_waiters or stopping):
                        # Spans ended just before the flush request: they belong to it too.
                        self._wake.set()
                        continue
                    waiters, self._flush_waiters = self._flush_waiters, []
                for waiter in waiters:
                    waiter.set()
                if stopping and not self._queue:
                    self._sender.close()
                    return

    def _encode(self, batch: list[ReadableSpan]) -> bytes | None:
        try:
            return encode(batch)
        except Exception:
            pass
        # Some span cannot be encoded (a foreign processor mutated it?): keep the others.
        good = []
        for span in batch:
            try:
                encode([span])
            except Exception as exc:
                if not self._encode_warned:
                    self._encode_warned = True
                    _warn(f"dropped span {span.name!r}: it cannot be encoded as OTLP ({exc!r})")
            else:
                good.append(span)
        return encode(good) if good else None

    def _take(self, count: int) -> list[ReadableSpan]:
        batch = []
        while self._queue and len(batch) < count:
            batch.append(self._queue.popleft())
        return batch

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _deliver(self, payload: bytes, spans: int) -> None:
        if self._stopped_reason is not None or time.monotonic() < self._circuit_until:
            self._keep(payload, spans)
            return
        half_open = self._circuit_until > 0
        started = time.monotonic()
        backoff = self.tuning.initial_backoff
        while True:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                self._keep(payload, spans)
                return
            timeout = self.tuning.request_timeout
            if remaining is not None:
                timeout = min(timeout, remaining)
            outcome = self._sender.post(payload, timeout)
            if outcome.kind == "ok":
                self._sent += spans
                self._on_success()
                return
            if outcome.kind == "too_large":
                halves = split_payload(payload)
                if halves:
                    for half in halves:
                        self._deliver(half, span_count(half))
                else:
                    _warn(
                        f"the backend refused a span over its size limit ({outcome.detail}); dropped it"
                    )
                return
            if outcome.kind == "reject":
                _warn(
                    f"the backend refused a batch of {spans} spans ({outcome.detail}); dropped it"
                )
                return
            if outcome.kind in ("auth", "endpoint"):
                self._stop_sending(outcome)
                self._keep(payload, spans)
                return
            delay = outcome.retry_after if outcome.retry_after is not None else backoff * _jitter()
            delay = min(delay, self.tuning.max_backoff)
            backoff = min(backoff * 2, self.tuning.max_backoff)
            if half_open or not self._worth_waiting(started, delay):
                self._open_circuit()
                self._keep(payload, spans)
                return
            if self._stopping.is_set():
                time.sleep(delay)  # _worth_waiting checked it ends before the deadline
            else:
                self._stopping.wait(
                    delay
                )  # shutdown cuts the wait short: one last try, then the deadline rules

    def _worth_waiting(self, started: float, delay: float) -> bool:
        now = time.monotonic()
        if len(self._queue) >= self.tuning.max_queue // 2:
            return False  # memory pressure: the spool takes it, not the queue
        window = (
            self.tuning.retry_window_at_exit
            if self._stopping.is_set()
            else self.tuning.retry_window
        )
        if now + delay > started + window:
            return False
        remaining = self._remaining()
        return remaining is None or delay < remaining

    def _on_success(self) -> None:
        self._circuit_until = 0.0
        self._cooldown = self.tuning.cooldown
        if self._spooled_since_success:
            self._spooled_since_success = False
            self._start_drainer()

    def _open_circuit(self) -> None:
        # While the backend is down, batches go straight to disk instead of each waiting out
        # its own retries; the next batch after the cooldown probes again.
        self._circuit_until = time.monotonic() + self._cooldown
        self._cooldown = min(self._cooldown * 2, self.tuning.max_cooldown)

    def _stop_sending(self, outcome: Outcome) -> None:
        # Retrying cannot fix a refused key or a wrong URL: say so once, keep everything on disk.
        with self._lock:
            if self._stopped_reason is not None:
                return
            self._stopped_reason = outcome.detail
        if outcome.kind == "auth":
            problem = f"rejected API key {mask_key(self._api_key)} ({outcome.detail})"
            fix = "fix AGENTTRACE_API_KEY"
        else:
            problem = f"has no OTLP endpoint at {TRACES_PATH} ({outcome.detail})"
            fix = "fix AGENTTRACE_API_URL"
        _warn(
            f"the backend at {self._api_url} {problem}; not sending again from this process. "
            f"Traces are kept in {self.spool.directory}; {fix} and run `agenttrace flush`."
        )

    def _spool(self, payload: bytes, spans: int) -> bool:
        if self.spool.write(payload, spans):
            self._spooled += spans
            self._spooled_since_success = True
            return True
        return False

    def _through(self, batch: list[ReadableSpan]) -> None:
        if self._done is not None:
            try:
                self._done(batch)
            except Exception as exc:  # a listener's failure must not stop the export
                _warn(f"after exporting a batch: {exc!r}")

    def _keep(self, payload: bytes, spans: int) -> None:
        # From the worker: once shutdown abandoned it, the main thread has spooled its batch.
        with self._lock:
            if self._abandoned:
                return
        self._spool(payload, spans)

    def _start_drainer(self) -> None:
        if self._stopped_reason is not None or (
            self._drainer is not None and self._drainer.is_alive()
        ):
            return
        self._drainer = threading.Thread(target=self._drain, name="agenttrace-spool", daemon=True)
        exempt_thread(self._drainer)
        self._drainer.start()

    def _drain(self) -> None:
        sender = None
        try:
            if not self.spool.pending():
                return
            sender = Sender(self._api_url, self._api_key)
            report = deliver_spool(
                self.spool, sender, timeout=self.tuning.request_timeout, stop=self._stopping
            )
            if report.failure is not None and report.failure.kind in ("auth", "endpoint"):
                self._stop_sending(report.failure)
        except Exception as exc:  # a background nicety must never take the agent down
            _warn(f"delivering the spool failed ({exc!r}); `agenttrace flush` can retry it")
        finally:
            if sender is not None:
                sender.close()


def _jitter() -> float:
    # 0.8-1.2 without touching `random`: the global generator is the agent's (seeded, replayed).
    return 0.8 + 0.4 * (time.perf_counter_ns() // 1000 % 1000) / 1000


def _warn(message: str) -> None:
    print(f"agenttrace: {message}", file=sys.stderr, flush=True)
