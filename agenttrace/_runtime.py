"""The process-wide session behind the public API: provider, runs, recorder, replay, exit."""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _config, _context, _entropy, _trace
from ._body import encode_body, header
from ._exchange import Answer, Exchange, HttpCall
from ._governance import Governance, _stderr
from ._ids import ID_GENERATOR
from ._redaction import Redactor
from ._replay import ReplayEngine
from .errors import GovernanceViolation

logger = logging.getLogger("agenttrace")

SDK_VERSION = "0.1.0"
_lock = threading.RLock()
_runtime: Runtime | None = None


def current_runtime() -> Runtime | None:
    return _runtime


class RunHandle:
    """One agent run: a root span and the non-HTTP events recorded while it is open."""

    def __init__(self, runtime: Runtime, name: str, implicit: bool) -> None:
        self.runtime = runtime
        self.name = name
        self.implicit = implicit
        self.events: list[dict[str, Any]] = []
        self.failed: str | None = None
        self.ended = False
        # An implicit run with nothing in it is not written when explicit runs held the work.
        self.discard_if_empty = False
        self.span = runtime.tracer.start_span(
            name,
            context=otel_context.Context(),  # a run is always a new trace
            kind=SpanKind.INTERNAL,
            attributes={_trace.ATTR_RUN_NAME: name, _trace.ATTR_RUN: json.dumps(runtime.run_facts)},
        )
        self.trace_id = format(self.span.get_span_context().trace_id, "032x")

    def fail(self, message: str) -> None:
        self.failed = message

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.events:
            self.span.set_attribute(_trace.ATTR_EVENTS, _trace.dumps_compact(self.events))
        if self.failed:
            self.span.set_status(Status(StatusCode.ERROR, self.runtime.redactor.text(self.failed)))
        else:
            self.span.set_status(Status(StatusCode.OK))
        self.span.end()


class Runtime:
    def __init__(self, settings: _config.Settings) -> None:
        self.settings = settings
        self.redactor = Redactor.from_settings(settings)
        self.capturing = False
        self._seq = itertools.count(1)
        self._runs: list[RunHandle] = []  # open runs, innermost last
        self._implicit: RunHandle | None = None
        self._explicit_runs = 0
        self._pending: list[dict[str, Any]] = []  # non-HTTP events seen before any run opened
        self._open: dict[int, Exchange] = {}
        self.exit_code: int | None = None
        self.failure: str | None = None
        self.engine: ReplayEngine | None = None
        self.governance: Governance | None = None
        self.store = None
        self._processors: list[Any] = []
        self._shutdown_done = False
        self.force_exit = False
        self.started_by = "init()"  # or "opentelemetry-instrument" (agenttrace.distro)
        replay_run: dict[str, Any] = {}
        if settings.replaying:
            from ._trace import load_replay_source

            replay_run, events, label = load_replay_source(settings.replay_events)
            self.engine = ReplayEngine(events, label)
            self.governance = Governance(settings.strict)
        self.run_facts = self._facts(replay_run)
        self.provider = self._provider()
        self.tracer = self.provider.get_tracer("agenttrace", SDK_VERSION)

    # -- set-up --------------------------------------------------------------------------------

    def _facts(self, recorded: dict[str, Any]) -> dict[str, Any]:
        facts = {
            "seed": recorded.get("seed", ID_GENERATOR._random.getrandbits(64)),
            "clock_start": recorded.get("clock_start", time.time()),
            "hash_seed": os.environ.get("PYTHONHASHSEED", "random"),
            "sdk": f"agenttrace {SDK_VERSION}",
            "python": platform.python_version(),
            "mode": self.settings.mode,
        }
        if recorded and str(recorded.get("hash_seed", "random")) != facts["hash_seed"]:
            _stderr(
                f"agenttrace WARNING: PYTHONHASHSEED was {recorded.get('hash_seed')!r} when recorded and is "
                f"{facts['hash_seed']!r} now; set and dict-of-set iteration order may differ. "
                f"Run with PYTHONHASHSEED={recorded.get('hash_seed')} to match."
            )
        return facts

    def _provider(self) -> TracerProvider:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            # Join the app's provider (never replace it). Its default generator draws from the
            # global random module, which replay serves to the agent: swap in our private one.
            if type(current.id_generator) is RandomIdGenerator:
                current.id_generator = ID_GENERATOR
            return current
        provider = TracerProvider(resource=self._resource(), id_generator=ID_GENERATOR)
        if isinstance(current, trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        else:
            # Someone set a non-SDK global provider: setting ours would only log "Overriding of
            # current TracerProvider is not allowed". Record through a private provider instead.
            logger.info(
                "agenttrace: the global TracerProvider is a %s, not the SDK's; recording with "
                "a private provider",
                type(current).__name__,
            )
        return provider

    def _resource(self) -> Resource:
        from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector

        # Resource.create reads OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, but attributes
        # passed in win: our script-name default must not hide a service.name set there.
        defaulted = self.settings.sources.get("service_name", "default") == "default"
        if defaulted and SERVICE_NAME in OTELResourceDetector().detect().attributes:
            return Resource.create()
        return Resource.create({SERVICE_NAME: self.settings.service_name or "agent"})

    def start(self) -> None:
        """Wire exporters and instrumentors, seed, and (replay) close the sandbox. The implicit
        run opens on first use (see ``current_run``)."""
        settings = self.settings
        if settings.replaying or not settings.api_key:
            from .exporters.local import LocalStore

            # A replayed run goes beside the recordings, never over last.json / last-failure.json.
            directory = (
                os.path.join(settings.local_dir, "replays")
                if settings.replaying
                else settings.local_dir
            )
            self.store = LocalStore(directory)
            self._add_processor(self.store.processor)
        else:
            from .exporters.backend import backend_processor

            self._add_processor(backend_processor(settings))
        if not settings.replaying:  # a replay is offline: nothing leaves the machine
            from .exporters.collector import collector_processor

            collector = collector_processor(self.provider)
            if collector is not None:
                self._add_processor(collector)
        from . import _propagation
        from .instrumentors import instrument_all

        _propagation.install()
        instrument_all()
        install(self)
        random.seed(self.run_facts["seed"])
        if self.engine is not None and self.governance is not None:
            import time_machine

            self._travel = time_machine.travel(self.run_facts["clock_start"], tick=True)
            self._travel.start()
            _warm_platform_caches()
            _exempt_machine_probes(self.governance)
            self.governance.activate()
        _entropy.install(self)
        self.capturing = True

    def _add_processor(self, processor: Any) -> None:
        self.provider.add_span_processor(processor)
        self._processors.append(processor)

    # -- runs ----------------------------------------------------------------------------------

    def open_run(self, name: str, implicit: bool = False) -> RunHandle:
        run = RunHandle(self, name, implicit)
        with _lock:
            self._explicit_runs += 0 if implicit else 1
            self._runs.append(run)
            # Entropy drawn before any run (module-level code after init) belongs to the run that
            # follows: replaying that run re-executes the same code.
            run.events, self._pending = self._pending, []
        if self.store is not None:
            self.store.watch(run)
        return run

    def close_run(self, run: RunHandle) -> None:
        with _lock:
            if run in self._runs:
                self._runs.remove(run)
        run.end()

    def _run_in_context(self) -> RunHandle | None:
        ctx = trace.get_current_span().get_span_context()
        with _lock:
            if ctx.is_valid:
                for run in reversed(self._runs):
                    if run.span.get_span_context().trace_id == ctx.trace_id:
                        return run
            explicit = [r for r in self._runs if not r.implicit]
            if explicit:
                return explicit[-1]
            return (
                self._implicit if self._implicit is not None and not self._implicit.ended else None
            )

    def owns_trace(self, trace_id: int) -> bool:
        """Whether ``trace_id`` is the trace of an open run (where what we record must go)."""
        with _lock:
            return any(r.span.get_span_context().trace_id == trace_id for r in self._runs)

    def current_run(self) -> RunHandle | None:
        """The run a call or step belongs to: by context, else the innermost open explicit run,
        else the implicit run, opened on first use (so a process that only uses explicit runs
        does not write an empty extra trace)."""
        run = self._run_in_context()
        if run is not None or self._shutdown_done:
            return run
        with _lock:
            if self._implicit is None:
                self._implicit = self.open_run(self.settings.service_name or "agent", implicit=True)
            return self._implicit

    def parent_span(self, run: RunHandle | None = None) -> trace.Span | None:
        """Where a new span hangs: the current span if it is in one of our runs, else the run.

        A run is one trace, so what it records must be in that trace: not in a thread the agent
        started without context, nor under a span of the app or of another instrumentation that
        belongs to no run (opentelemetry-instrumentation-httpx opens its CLIENT span around
        ours, in a trace of its own when no run is current).
        """
        current = trace.get_current_span()
        context = current.get_span_context()
        if context.is_valid and self.owns_trace(context.trace_id):
            return current
        run = run or self.current_run()
        return run.span if run is not None else None

    def parent_context(self, run: RunHandle | None = None) -> otel_context.Context | None:
        """``parent_span`` as the context to start a span in (None: the current context)."""
        parent = self.parent_span(run)
        if parent is None or parent is trace.get_current_span():
            return None
        return trace.set_span_in_context(parent, otel_context.get_current())

    def next_seq(self) -> int:
        return next(self._seq)  # itertools.count: atomic under the GIL, no lock on the hot path

    # -- calls ---------------------------------------------------------------------------------

    def begin_call(self, call: HttpCall) -> Exchange | None:
        try:
            return self._begin_call(call)
        except GovernanceViolation:
            raise
        except Exception:
            logger.exception(
                "agenttrace: could not intercept %s %s; the call goes through unrecorded",
                call.method,
                call.url,
            )
            return None

    def _begin_call(self, call: HttpCall) -> Exchange:
        step = _context.current_step()
        rules = _context.current_rules()
        recorded = None
        if self.engine is not None:
            recorded = self.engine.take_exact(call.method, call.url, call.body)
        if recorded is not None:
            # The recorded request, already redacted, is the very same call.
            redacted = recorded["request"]
            redacted_paths = [p for p in recorded.get("redacted", ()) if p.startswith("request")]
        else:
            request = {
                "method": call.method.upper(),
                "url": call.url,
                "headers": [[k, v] for k, v in call.headers],
                "body": encode_body(call.body or b"", header(call.headers, "content-type")),
            }
            # Redacted once: the same form keys the replay lookup and goes into the event.
            redacted, redacted_paths = self.redactor.request(request, rules)
            if self.engine is not None:
                recorded = self.engine.take(redacted)
                if recorded is None:
                    self._diverged(redacted, step.name if step else None)
        if recorded is not None and recorded.get("dropped"):
            self._dropped_answer(recorded)
        answer = Answer(recorded) if recorded is not None else None
        run = self.current_run()
        exchange = Exchange(
            self,
            call,
            seq=self.next_seq(),
            step=step.name if step else None,
            rules=rules,
            request=redacted,
            request_redacted=redacted_paths,
            answer=answer,
            run=run,
        )
        self._open[id(exchange)] = exchange  # dict set/pop are atomic under the GIL
        return exchange

    def _dropped_answer(self, recorded: dict[str, Any]) -> None:
        """A step filter dropped this call's payloads when recording: only its status is left,
        so the agent would silently get an empty answer."""
        assert self.governance is not None
        where = f" in step {recorded['step']!r}" if recorded.get("step") else ""
        self.governance.divergence(
            f"cannot replay {recorded['request']['method']} {recorded['request']['url']}{where}: "
            "its payloads were dropped by a step filter when it was recorded, so only an empty "
            "answer is left. Have the filter redact fields instead of returning None."
        )

    def _diverged(self, request: dict[str, Any], step: str | None) -> None:
        assert self.engine is not None and self.governance is not None
        where = f" in step {step!r}" if step else " outside any step"
        lines = [f"unrecorded call {request['method']} {request['url']}{where}."]
        candidates = self.engine.candidates(request)
        if candidates:
            lines.append("Closest recorded calls not yet replayed:")
            for event, diff in candidates:
                lines.append(
                    f"  #{event['seq']} {event['request']['method']} {event['request']['url']}"
                    + (f" (step {event['step']!r})" if event.get("step") else "")
                    + f": {diff}"
                )
        else:
            lines.append("Every recorded call has already been replayed.")
        lines.append(f"Recording: {self.engine.source}")
        self.governance.divergence("\n".join(lines))
        # relaxed: the call goes through live; its sockets are expected
        self.governance.passthrough += 1

    def call_finished(self, exchange: Exchange, event: dict[str, Any]) -> None:
        self._open.pop(id(exchange), None)
        if exchange.answer is None and self.governance is not None and self.governance.passthrough:
            self.governance.passthrough -= 1

    # -- entropy and DNS (called by the patches in _entropy) -----------------------------------

    def _record(self, event: dict[str, Any]) -> None:
        event["seq"] = self.next_seq()
        step = _context.current_step()
        event["step"] = step.name if step else None
        run = self._run_in_context()
        with _lock:
            (run.events if run is not None else self._pending).append(event)

    def entropy_bytes(self, source: str, size: int, real: Callable[[int], bytes]) -> bytes:
        if self.engine is not None:
            data = self.engine.entropy(source, size, _entropy.current_flow())
            if data is None:
                assert self.governance is not None
                self.governance.escape(
                    f"{source}({size}) was called more often than in the recording, so there is no recorded "
                    "entropy to serve; real randomness would make the run diverge."
                )
                data = real(size)
        else:
            data = real(size)
        event = {"kind": "entropy", "source": source, "data": _entropy.encode(data)}
        event["flow"] = _entropy.current_flow()
        self._record(event)
        return data

    def entropy_seed(self, real: Callable[[], int]) -> int:
        if self.engine is not None:
            value = self.engine.seed()
            if value is None:
                assert self.governance is not None
                self.governance.escape(
                    "random.Random() / random.seed() without a seed was called more often than in the recording."
                )
                value = real()
        else:
            value = real()
        self._record({"kind": "entropy", "source": "random.seed", "value": str(value)})
        return value

    def dns_lookup(self, host: Any, port: Any, real: Callable[[], Any]) -> Any:
        host_s = host.decode() if isinstance(host, bytes) else str(host)
        if self.engine is not None:
            recorded = self.engine.dns(host_s, port)
            if recorded is not None:
                result = _entropy.dns_from_json(recorded)
            else:
                assert self.governance is not None
                self.governance.escape(
                    f"DNS lookup of {host_s}:{port} outside an intercepted HTTP call is not in the recording."
                )
                with self.governance.exempt():
                    result = real()
        else:
            result = real()
        self._record(
            {"kind": "dns", "host": host_s, "port": port, "result": _entropy.dns_to_json(result)}
        )
        return result

    # -- exit ----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        if self._shutdown_done:
            return
        self.capturing = False
        _entropy.uninstall()
        if self.governance is not None:
            self.governance.deactivate()
        with _lock:
            open_exchanges = list(self._open.values())
        for exchange in open_exchanges:  # streams the agent never closed still get recorded
            exchange.close()
        failure = self.failure
        with _lock:
            # A process that recorded no run at all still gets its (empty) trace, so the run can
            # be found and replayed like any other.
            if self._implicit is None and (self._pending or not self._explicit_runs):
                self._implicit = self.open_run(self.settings.service_name or "agent", implicit=True)
            if self._implicit is not None:
                self._implicit.discard_if_empty = self._explicit_runs > 0
            runs = list(reversed(self._runs))
            self._shutdown_done = True
        for run in runs:
            if failure and run.failed is None:
                run.fail(failure)
            self.close_run(run)
        for processor in self._processors:
            try:
                processor.shutdown()
            except Exception:
                logger.exception("agenttrace: error while shutting down %r", processor)
        if self.store is not None:
            self.store.announce()
        failed = False
        if self.governance is not None and self.engine is not None:
            failed = self.governance.report(self.engine.unplayed())
            travel = getattr(self, "_travel", None)
            if travel is not None:
                travel.stop()
        self.force_exit = failed


def _warm_platform_caches() -> None:
    """Fill the platform module's caches before the sandbox closes.

    SDKs describe the machine in request headers (the OpenAI and Anthropic SDKs call
    ``platform.processor()``, which runs ``uname -p`` once per process). That is the same fact
    in record and replay, not agent I/O, so it must not count as a sandbox escape.
    """
    for probe in (platform.uname, platform.processor, platform.platform, platform.machine):
        try:
            probe()
        except Exception:
            pass


def _exempt_machine_probes(governance: Governance) -> None:
    """``uuid.getnode()`` (behind ``uuid1``) may run ``ip link`` / ``ifconfig`` to find a MAC
    address: a fact about the machine, like ``platform``, not agent I/O. It runs outside the
    sandbox, on demand (warming it would cost every replay a subprocess)."""
    import uuid

    original = uuid.getnode
    if getattr(original, "_agenttrace_exempt", False):
        return

    def getnode() -> int:
        with governance.exempt():
            return original()

    getnode._agenttrace_exempt = True  # type: ignore[attr-defined]
    uuid.getnode = getnode


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def uninstall() -> None:
    global _runtime
    _runtime = None


_exit_tracked = False


def track_exit() -> None:
    """Know how the process ends: uncaught exception or sys.exit status (atexit gets neither)."""
    global _exit_tracked
    if _exit_tracked:
        return
    _exit_tracked = True
    original_excepthook = sys.excepthook
    original_exit = sys.exit

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        rt = _runtime
        if rt is not None and rt.failure is None:
            rt.failure = f"{exc_type.__name__}: {exc}"
        original_excepthook(exc_type, exc, tb)

    def exit(status: Any = None) -> None:  # noqa: A001
        rt = _runtime
        if rt is not None and status not in (None, 0):
            rt.exit_code = status if isinstance(status, int) else 1
            if rt.failure is None:
                rt.failure = f"SystemExit: {status}"
        original_exit(status)

    sys.excepthook = excepthook
    sys.exit = exit
    atexit.register(_atexit)


def _atexit() -> None:
    rt = _runtime
    if rt is None:
        return
    try:
        rt.shutdown()
    except Exception:
        logger.exception("agenttrace: error at exit")
    if getattr(rt, "force_exit", False):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
        finally:
            code = rt.exit_code if rt.exit_code not in (None, 0) else 1
            os._exit(code)
