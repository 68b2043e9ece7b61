"""The run/step API: decorators and context managers for sync, async and generator code."""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _config, _context, _session, _trace
from ._redaction import Rules
from ._runs import RunHandle

logger = logging.getLogger("agenttrace")
F = TypeVar("F", bound=Callable[..., Any])
_init_lock = threading.Lock()
_warned_reinit = False


def init(
    api_key: str | None = None,
    api_url: str | None = None,
    mode: str | None = None,
    governance_level: str | None = None,
    replay_events: Any = None,
    **more: Any,
) -> _config.Settings:
    """Configure AgentTrace for this process and start recording (or replaying).

    Each argument overrides its ``AGENTTRACE_*`` environment variable, which overrides
    ``[tool.agenttrace]`` in ``pyproject.toml``. Idempotent: a second call keeps the first
    configuration and returns it (a warning names any differing argument it ignored); so does a
    call in a process that ``opentelemetry-instrument`` started AgentTrace in.
    Raises :class:`ConfigError` for invalid settings and :class:`EventsFileError` for unusable
    replay events.
    """
    global _warned_reinit
    overrides = {
        "api_key": api_key,
        "api_url": api_url,
        "mode": mode,
        "governance_level": governance_level,
        "replay_events": replay_events,
        **more,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    with _init_lock:
        session = _session.current()
        if session is not None:
            ignored = [k for k, v in overrides.items() if getattr(session.settings, k, None) != v]
            if ignored and not _warned_reinit:
                _warned_reinit = True
                if session.started_by == "init()":
                    logger.warning(
                        "agenttrace.init() was already called; keeping the first configuration "
                        "(ignored: %s)",
                        ", ".join(ignored),
                    )
                else:
                    # Running already, maybe replaying under governance: agent code must not be
                    # able to reconfigure (or switch off) what the launcher set up.
                    logger.warning(
                        "agenttrace was started by %s from AGENTTRACE_* variables; init() keeps "
                        "that configuration (ignored: %s). Set them as environment variables.",
                        session.started_by,
                        ", ".join(ignored),
                    )
            return session.settings
        settings = _config.resolve(overrides)
        _session.Session(settings).start()
        return settings


def get_settings() -> _config.Settings:
    """The resolved settings: those in force, or what ``init()`` would resolve right now."""
    session = _session.current()
    return session.settings if session is not None else _config.resolve({})


def shutdown() -> None:
    """End open runs, write or flush the trace, and stop intercepting. Also runs at exit.

    A session someone else manages (the pytest plugin's, one per test) is left to its owner."""
    session = _session.current()
    if session is None:
        return
    if not session.owns_exit:
        logger.debug("agenttrace.shutdown(): the running session is managed by its owner")
        return
    session.stop()


def _ensure_session() -> _session.Session:
    session = _session.current()
    if session is None:
        init()
        session = _session.current()
    assert session is not None
    return session


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


class _Scope:
    """What ``run`` and ``step`` share: a span opened once, activated around each resume."""

    def start(self) -> None:
        raise NotImplementedError

    def context(self) -> otel_context.Context:
        raise NotImplementedError

    def finish(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    @contextmanager
    def activated(self) -> Iterator[None]:
        token = otel_context.attach(self.context())
        try:
            yield
        finally:
            otel_context.detach(token)


def _failure(exc: BaseException | None) -> str | None:
    if exc is None or isinstance(exc, GeneratorExit):
        return None
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return None
    return f"{type(exc).__name__}: {exc}"


def _record_exception(span: Any, exc: BaseException, session: _session.Session) -> None:
    """``record_exception`` with the message and traceback scrubbed at the source, so other
    processors on a joined TracerProvider never see a secret an exception message carried."""
    import traceback

    text = session.redactor.text
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__qualname__,
            "exception.message": text(str(exc)),
            "exception.stacktrace": text("".join(traceback.format_exception(exc))),
        },
    )


class _RunScope(_Scope):
    def __init__(self, name: str | None) -> None:
        self.name = name
        self.handle: RunHandle | None = None

    def start(self) -> None:
        self.session = _ensure_session()
        settings = self.session.settings
        self.handle = self.session.runs.open(self.name or settings.service_name or "agent_run")

    def context(self) -> otel_context.Context:
        assert self.handle is not None
        return trace.set_span_in_context(self.handle.span, otel_context.Context())

    def finish(self, exc: BaseException | None) -> None:
        assert self.handle is not None
        failure = _failure(exc)
        if failure and exc is not None:
            self.handle.fail(failure)
            _record_exception(self.handle.span, exc, self.session)
        self.session.runs.close(self.handle)


class _StepScope(_Scope):
    def __init__(self, name: str, type: str | None, input: Any, filter: Any) -> None:
        self.name = name
        self.type = type
        self.input = input
        self.rules = Rules.parse(filter)
        self.state: _context.StepState | None = None
        self._parent: otel_context.Context | None = None

    def start(self) -> None:
        session = _ensure_session()
        rules = _context.current_rules() + self.rules
        attributes: dict[str, Any] = {}
        if self.type:
            attributes[_trace.ATTR_STEP_TYPE] = self.type
        if self.input is not None:
            value, _ = session.redactor.payload(self.input, rules)
            attributes[_trace.ATTR_STEP_INPUT] = _to_json(value)
        parent = session.runs.parent_context()
        span = session.tracer.start_span(
            self.name, context=parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self.state = _context.StepState(self.name, rules, span)
        base = parent if parent is not None else otel_context.get_current()
        self._ctx = _context.with_step(self.state, trace.set_span_in_context(span, base))
        self._session = session

    def context(self) -> otel_context.Context:
        return self._ctx

    def finish(self, exc: BaseException | None) -> None:
        assert self.state is not None
        span = self.state.span
        try:
            if self.state.has_result:
                value, _ = self._session.redactor.payload(self.state.result, self.state.rules)
                span.set_attribute(_trace.ATTR_STEP_RESULT, _to_json(value))
            failure = _failure(exc)
            if failure and exc is not None:
                _record_exception(span, exc, self._session)
                span.set_status(Status(StatusCode.ERROR, self._session.redactor.text(failure)))
        except Exception:
            logger.exception("agenttrace: could not record step %r", self.name)
        span.end()


class _ScopeUser:
    """Context manager and decorator over a fresh scope per use."""

    def __init__(self) -> None:
        # Open scopes per thread and asyncio task: one object (a module-level step, say) may be
        # entered from several at once, and each exit must close its own entry.
        self._open: contextvars.ContextVar[tuple[tuple[_Scope, object], ...]] = (
            contextvars.ContextVar(f"agenttrace-{type(self).__name__}-{id(self)}", default=())
        )

    def _new_scope(self, fn: Callable[..., Any] | None = None) -> _Scope:
        raise NotImplementedError

    def __enter__(self) -> Any:
        scope = self._new_scope()
        scope.start()
        token = otel_context.attach(scope.context())
        self._open.set((*self._open.get(), (scope, token)))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        *rest, (scope, token) = self._open.get()
        self._open.set(tuple(rest))
        try:
            scope.finish(exc)
        finally:
            otel_context.detach(token)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        return _decorate(fn, lambda: self._new_scope(fn))  # type: ignore[return-value]


def _name_of(fn: Callable[..., Any] | None) -> str | None:
    return getattr(fn, "__qualname__", None) if fn is not None else None


class run(_ScopeUser):  # noqa: N801 - reads as a verb in user code: @agenttrace.run(...)
    """One agent run = one trace. Use as ``@agenttrace.run(name=...)``, bare ``@agenttrace.run``
    or ``with agenttrace.run(...)``. A decorated function's run is named after it by default.

    The run's root span ends with status ``error`` if the body raises (or exits non-zero).
    """

    def __new__(cls, name: Any = None) -> Any:
        if callable(name):  # bare @agenttrace.run
            return cls()(name)
        return super().__new__(cls)

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name

    def _new_scope(self, fn: Callable[..., Any] | None = None) -> _Scope:
        return _RunScope(self.name or _name_of(fn))


class step(_ScopeUser):  # noqa: N801
    """A named unit of agent work inside a run: ``with agenttrace.step("Planning", type="thought"):``.

    Also a decorator (bare ``@agenttrace.step`` names the step after the function).
    ``input`` is recorded (filtered); ``filter`` — field names, regexes or a callable
    ``event -> event | None`` — applies to every event inside the step, nested steps included.
    """

    def __new__(cls, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        if callable(name):  # bare @agenttrace.step
            return cls(_name_of(name) or "step")(name)
        return super().__new__(cls)

    def __init__(
        self, name: str, type: str | None = None, input: Any = None, filter: Any = None
    ) -> None:  # noqa: A002
        super().__init__()
        self.name = name
        self.type = type
        self.input = input
        self.filter = filter
        Rules.parse(filter)  # fail early on a malformed filter

    def _new_scope(self, fn: Callable[..., Any] | None = None) -> _Scope:
        return _StepScope(self.name, self.type, self.input, self.filter)


def set_result(value: Any) -> None:
    """Record the result of the innermost open step (filtered like its input)."""
    state = _context.current_step()
    if state is None:
        logger.warning("agenttrace.set_result() called outside any step; ignored")
        return
    state.result = value
    state.has_result = True


@contextmanager
def _lifetime(new_scope: Callable[[], _Scope]) -> Iterator[_Scope]:
    """A scope from start to finish around one call, whatever kind of function it is."""
    scope = new_scope()
    scope.start()
    error: BaseException | None = None
    try:
        yield scope
    except BaseException as exc:
        error = exc
        raise
    finally:
        scope.finish(error)


def _decorate(fn: Callable[..., Any], new_scope: Callable[[], _Scope]) -> Callable[..., Any]:
    # Generators are activated around each resume only: between two items the caller runs, and
    # the step must not leak into its context.
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _lifetime(new_scope) as scope:
                with scope.activated():
                    agen = fn(*args, **kwargs)
                value: Any = None
                while True:
                    try:
                        with scope.activated():
                            item = await agen.asend(value)
                    except StopAsyncIteration:
                        return
                    try:
                        value = yield item
                    except BaseException as exc:  # thrown in by the caller
                        with scope.activated():
                            item = await agen.athrow(exc)
                        value = yield item

        return async_gen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _lifetime(new_scope) as scope, scope.activated():
                return await fn(*args, **kwargs)

        return async_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _lifetime(new_scope) as scope:
                with scope.activated():
                    gen = fn(*args, **kwargs)
                value: Any = None
                while True:
                    try:
                        with scope.activated():
                            item = gen.send(value)
                    except StopIteration as stop:
                        return stop.value
                    try:
                        value = yield item
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as exc:
                        with scope.activated():
                            item = gen.throw(exc)
                        value = yield item

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _lifetime(new_scope) as scope, scope.activated():
            return fn(*args, **kwargs)

    return wrapper
