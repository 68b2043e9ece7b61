"""The one small protocol every interception point meets, and the session's active mode.

What happens to an intercepted call is decided once, when a session starts, by the mode it
activates: the Recorder (``agenttrace.record``) goes live and records; the Player
(``agenttrace.replay.ReplaySpanProcessor``) serves from the recording under a governance gate.
Instrumentors never ask which one is active: like an httpx transport, each only translates
between its client and :class:`~agenttrace.capture.HttpCall` / :class:`Exchange`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from .. import _context
from ..errors import GovernanceViolation
from .calls import HttpCall
from .exchange import Exchange
from .messages import MessageSession, SessionCall
from .tools import ToolCall, ToolRun

logger = logging.getLogger("agenttrace")
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Mode(Protocol):
    """Record or replay: what a session does with each kind of intercepted I/O."""

    def begin_http(self, call: HttpCall) -> Exchange | None:
        """Intercept an HTTP call: an exchange to report to (or serve from), or None."""

    def begin_session(self, call: SessionCall) -> MessageSession | None:
        """Intercept a websocket connection or an MCP session: a session to report to, or a
        served one (``session.recorded`` set), or None."""

    def begin_tool(self, call: ToolCall) -> ToolRun | None:
        """Intercept a call of an ``agenttrace.tool``: a run to report to, or a served one
        (``run.recorded`` set: the body must not run), or None."""

    def entropy_bytes(self, source: str, size: int, real: Callable[[int], bytes]) -> bytes:
        """``size`` random bytes for ``source`` (``os.urandom``, ``os.getrandom``)."""

    def entropy_seed(self, real: Callable[[], int]) -> int:
        """The seed of an unseeded ``random.Random()`` / ``random.seed()``."""

    def dns_lookup(self, host: str, port: Any, real: Callable[[], Any]) -> Any:
        """A ``socket.getaddrinfo`` made outside any intercepted call."""

    def wall_clock(self, real_ns: int) -> int:
        """A wall-clock read of the agent's (``time.time_ns()`` and friends), in ns."""

    def uuid_node(self, real: Callable[[], int]) -> int:
        """``uuid.getnode()``: the machine's node id behind ``uuid1``."""

    def parent_context(self) -> Context | None:
        """Where a span started here belongs (the current run), when no span is current."""


_active: Mode | None = None


def activate(mode: Mode) -> None:
    global _active
    _active = mode


def deactivate(mode: Mode) -> None:
    global _active
    if _active is mode:
        _active = None


def active() -> Mode | None:
    """The mode of the running session, unless this is our own (suppressed) work such as
    exporting spans."""
    if not is_instrumentation_enabled():
        return None
    return _active


def intercepting() -> bool:
    """Whether ``begin`` may intercept a call made here: a cheap test that lets a client skip
    preparing an ``HttpCall`` (e.g. buffering a streamed upload) when nothing would record it.
    Inside an intercepted call the layers below it (requests → urllib3 → http.client) must not
    capture the same call again."""
    return not _context.in_call() and active() is not None


def begin(call: HttpCall) -> Exchange | None:
    """Start intercepting a call; None means "not ours, call the client as if we were not here"."""
    return _begin(lambda mode: mode.begin_http(call), f"{call.method} {call.url}")


def begin_session(call: SessionCall) -> MessageSession | None:
    """Start intercepting a message session (websocket, MCP); None: not ours."""
    return _begin(lambda mode: mode.begin_session(call), f"{call.kind} {call.label}")


def begin_tool(call: ToolCall) -> ToolRun | None:
    """Start intercepting a tool call; None: not ours (run the body as if we were not here)."""
    return _begin(lambda mode: mode.begin_tool(call), f"tool {call.name}")


def _begin(start: Callable[[Mode], T | None], what: str) -> T | None:
    mode = active() if not _context.in_call() else None
    if mode is None:
        return None
    try:
        return start(mode)
    except GovernanceViolation:
        raise
    except Exception:
        logger.exception("agenttrace: could not intercept %s; it goes through unrecorded", what)
        return None


@contextmanager
def internal_errors(what: str) -> Iterator[None]:
    """Our own failure is logged, never raised into agent code (governance violations are
    what replay exists to raise)."""
    try:
        yield
    except GovernanceViolation:
        raise
    except Exception:
        logger.exception("agenttrace: could not %s", what)


@contextmanager
def clients_own_work() -> Iterator[None]:
    """A client's own bookkeeping (a connection id, a handshake key, frame masks) that a replay
    may not repeat the same way: it draws none of the agent's entropy, clock or flow numbers, and
    nothing below it is captured."""
    token = _context.enter_call()
    try:
        yield
    finally:
        _context.exit_call(token)


def when_intercepting(original: Callable[..., Any]) -> Callable[[F], F]:
    """Decorate a patch of ``original``: it runs only while a session intercepts; otherwise
    the call goes to ``original`` untouched. Coroutine functions stay coroutine functions."""

    def decorate(patch: F) -> F:
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def async_guarded(*args: Any, **kwargs: Any) -> Any:
                if not intercepting():
                    return await original(*args, **kwargs)
                return await patch(*args, **kwargs)

            guarded: Any = async_guarded
        else:

            @functools.wraps(original)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                if not intercepting():
                    return original(*args, **kwargs)
                return patch(*args, **kwargs)

        guarded.__wrapped__ = original
        return guarded  # type: ignore[return-value]

    return decorate
