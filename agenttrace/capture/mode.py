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

logger = logging.getLogger("agenttrace")
F = TypeVar("F", bound=Callable[..., Any])


class Mode(Protocol):
    """Record or replay: what a session does with each kind of intercepted I/O."""

    def begin_http(self, call: HttpCall) -> Exchange | None:
        """Intercept an HTTP call: an exchange to report to (or serve from), or None."""

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
    mode = active() if not _context.in_call() else None
    if mode is None:
        return None
    try:
        return mode.begin_http(call)
    except GovernanceViolation:
        raise
    except Exception:
        logger.exception(
            "agenttrace: could not intercept %s %s; the call goes through unrecorded",
            call.method,
            call.url,
        )
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
