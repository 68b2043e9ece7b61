"""A session: one recording or one replay, from ``start()`` to ``stop()``.

The session picks its mode once — a :class:`~agenttrace.record.Recorder`, or a
:class:`~agenttrace.replay.ReplaySpanProcessor` under a governance gate — and owns everything
that lives as long as it does: settings, the TracerProvider it joined, its runs, its exporters
(behind one scrubbing processor) and every patch it applied. ``agenttrace.init()`` starts the
default session; tests and the pytest plugin start and stop sessions in-process, one after
another, with nothing leaking between them.
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import random
import sys
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from . import _config, _propagation
from ._ids import ID_GENERATOR
from ._patches import Patches
from ._redaction import Redactor
from ._runs import Runs
from ._scrub_spans import ScrubbingSpanProcessor
from ._trace import REPLAYS_DIR, load_replay_source
from ._version import VERSION
from .capture import clock, entropy
from .capture import mode as capture_mode
from .governance import Governance, sandbox, stderr
from .governance import hook as governance_hook
from .record import Recorder
from .replay import ReplayEngine, ReplaySpanProcessor

logger = logging.getLogger("agenttrace")

_current: Session | None = None


def current() -> Session | None:
    """The running session (the default one ``init()`` started, or a test's)."""
    return _current


class Session:
    """One recording or replay. ``start()`` intercepts, ``stop()`` writes and undoes it all."""

    def __init__(self, settings: _config.Settings, *, owns_exit: bool = True) -> None:
        self.settings = settings
        self.started_by = "init()"  # or "opentelemetry-instrument" (agenttrace.distro)
        self.owns_exit = owns_exit  # the process's exit status and atexit are ours to watch
        self.redactor = Redactor.from_settings(settings)
        self.patches = Patches()
        self.failure: str | None = None
        self.exit_code: int | None = None
        self.failed = False  # a governed replay with violations: the process must not exit 0
        self._started = False
        self._stopped = False
        recorded: dict[str, Any] = {}
        events: list[dict[str, Any]] = []
        label = ""
        if settings.replaying:
            recorded, events, label = load_replay_source(settings.replay_events)
        self.facts = _run_facts(settings, recorded, self.redactor)
        self.provider = _provider(settings)
        self.tracer = self.provider.get_tracer("agenttrace", VERSION)
        self.runs = Runs(
            self.tracer, settings.service_name or "agent", self.facts, self.redactor.text
        )
        self.store: Any = None
        self.gate: Governance | None = None
        if settings.replaying:
            from .exporters.local import LocalStore

            # A replayed run goes beside the recordings, never over last.json / last-failure.json.
            self.store = LocalStore(os.path.join(settings.local_dir, REPLAYS_DIR))
            self.gate = Governance(settings.strict)
            self.player: ReplaySpanProcessor | None = ReplaySpanProcessor(
                ReplayEngine(events, label),
                self.runs,
                self.redactor,
                self.gate,
                self.store,
                started_ns=int(float(self.facts["clock_start"]) * 1e9),
            )
            self.mode: Any = self.player
            exporters: list[SpanProcessor] = [self.player]  # a replay is offline
        else:
            self.player = None
            self.mode = Recorder(self.runs, self.redactor)
            exporters = self._record_exporters()
        if self.store is not None:
            self.runs.watchers.append(self.store.watch)
        self.spans = ScrubbingSpanProcessor(self.redactor, exporters)

    def _record_exporters(self) -> list[SpanProcessor]:
        settings = self.settings
        exporters: list[SpanProcessor] = []
        if settings.api_key:
            from .exporters.backend import backend_processor

            exporters.append(backend_processor(settings))
        else:
            from .exporters.local import LocalStore

            self.store = LocalStore(settings.local_dir)
            exporters.append(self.store.processor)
        from .exporters.collector import collector_processor

        collector = collector_processor(self.provider)
        if collector is not None:
            exporters.append(collector)
        return exporters

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> Session:
        """Wire exporters and patches, seed, (replay) close the sandbox, then intercept. The
        implicit run opens on first use (see ``Runs.current``)."""
        global _current
        if self._started:
            return self
        if _current is not None and _current is not self:
            raise RuntimeError("another AgentTrace session is running; stop it first")
        self._started = True
        _current = self
        _router(self.provider).attach(self.spans)
        patches = self.patches
        from .instrumentors import instrument

        _propagation.install(patches)
        instrument(patches)
        if self.owns_exit:
            _track_exit(self, patches)
        random.seed(self.facts["seed"])
        if self.gate is not None:
            sandbox.warm_platform_caches()
            governance_hook.activate(self.gate)
        entropy.install(patches)
        if not clock.install(patches):
            logger.warning("agenttrace: time-machine is unusable; wall-clock reads not recorded")
        capture_mode.activate(self.mode)
        return self

    def stop(self) -> None:
        """End open runs, write or flush the trace, report, and undo every patch."""
        global _current
        if self._stopped or not self._started:
            return
        self._stopped = True
        capture_mode.deactivate(self.mode)
        if self.gate is not None:
            governance_hook.deactivate(self.gate)
        self.mode.close_open()  # streams the agent never closed still get recorded
        self.runs.close_all(self.failure)
        self.spans.shutdown()
        _router(self.provider).detach(self.spans)
        if self.store is not None:
            self.store.announce()
        if self.player is not None:
            self.failed = self.player.report()
        self.patches.undo()
        if _current is self:
            _current = None

    # -- what tests and the pytest plugin read ---------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def violations(self) -> list[str]:
        return list(self.gate.violations) if self.gate is not None else []

    def unplayed(self) -> list[dict[str, Any]]:
        return self.player.unplayed() if self.player is not None else []


# -- set-up helpers ------------------------------------------------------------------------------


def _run_facts(
    settings: _config.Settings, recorded: dict[str, Any], redactor: Redactor
) -> dict[str, Any]:
    """What a replay needs to reproduce the run: recorded ones in replay, fresh ones otherwise."""
    facts = {
        "seed": recorded.get("seed", ID_GENERATOR._random.getrandbits(64)),
        "clock_start": recorded.get("clock_start", time.time()),
        "hash_seed": os.environ.get("PYTHONHASHSEED", "random"),
        "sdk": f"agenttrace {VERSION}",
        "python": platform.python_version(),
        "mode": settings.mode,
        # the command that made the run (scrubbed: arguments may carry keys), for
        # `agenttrace pull --as-test`; a replay keeps the recording's
        "argv": recorded.get("argv") or [redactor.text(a) for a in sys.argv],
    }
    if recorded and str(recorded.get("hash_seed", "random")) != facts["hash_seed"]:
        stderr(
            f"agenttrace WARNING: PYTHONHASHSEED was {recorded.get('hash_seed')!r} when recorded and is "
            f"{facts['hash_seed']!r} now; set and dict-of-set iteration order may differ. "
            f"Run with PYTHONHASHSEED={recorded.get('hash_seed')} to match."
        )
    return facts


def _provider(settings: _config.Settings) -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # Join the app's provider (never replace it). Its default generator draws from the
        # global random module, which replay serves to the agent: swap in our private one.
        if type(current.id_generator) is RandomIdGenerator:
            current.id_generator = ID_GENERATOR
        return current
    provider = TracerProvider(resource=_resource(settings), id_generator=ID_GENERATOR)
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


def _resource(settings: _config.Settings) -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, but attributes
    # passed in win: our script-name default must not hide a service.name set there.
    defaulted = settings.sources.get("service_name", "default") == "default"
    if defaulted and SERVICE_NAME in OTELResourceDetector().detect().attributes:
        return Resource.create()
    return Resource.create({SERVICE_NAME: settings.service_name or "agent"})


class _Router(SpanProcessor):
    """Added once to a TracerProvider (processors cannot be removed from one): hands spans to
    the session attached now, so sessions one after another share a provider cleanly."""

    def __init__(self) -> None:
        self._target: SpanProcessor | None = None

    def attach(self, target: SpanProcessor) -> None:
        self._target = target

    def detach(self, target: SpanProcessor) -> None:
        if self._target is target:
            self._target = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        target = self._target
        if target is not None:
            target.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        target = self._target
        if target is not None:
            target.on_end(span)

    def shutdown(self) -> None:
        pass  # each session shuts its own processors down when it stops

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        target = self._target
        return target.force_flush(timeout_millis) if target is not None else True


def _router(provider: TracerProvider) -> _Router:
    router = getattr(provider, "_agenttrace_router", None)
    if router is None:
        router = _Router()
        provider.add_span_processor(router)
        provider._agenttrace_router = router  # type: ignore[attr-defined]
    return router


# -- how the process ends ----------------------------------------------------------------------


def _track_exit(session: Session, patches: Patches) -> None:
    """Know how the process ends: uncaught exception or sys.exit status (atexit gets neither),
    and stop the session at exit."""
    original_excepthook = sys.excepthook
    original_exit = sys.exit

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        if session.failure is None:
            session.failure = f"{exc_type.__name__}: {exc}"
        original_excepthook(exc_type, exc, tb)

    def exit(status: Any = None) -> None:  # noqa: A001
        if status not in (None, 0):
            session.exit_code = status if isinstance(status, int) else 1
            if session.failure is None:
                session.failure = f"SystemExit: {status}"
        original_exit(status)

    def at_exit() -> None:
        try:
            session.stop()
        except Exception:
            logger.exception("agenttrace: error at exit")
        if session.failed:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
            finally:
                os._exit(session.exit_code if session.exit_code not in (None, 0) else 1)

    patches.replace(sys, "excepthook", excepthook)
    patches.replace(sys, "exit", exit)
    atexit.register(at_exit)
    patches.on_undo(lambda: atexit.unregister(at_exit))
