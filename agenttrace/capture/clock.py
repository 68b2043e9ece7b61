"""The wall clock as an interception point: every wall-clock read of the agent goes to the mode.

``time.time``, ``time.time_ns``, ``datetime.datetime.now/utcnow/today``, ``datetime.date.today``
(and ``time.gmtime()``/``localtime()``/``strftime()`` without a time, ``clock_gettime`` of the
real-time clock) are patched at the C level by time-machine, so ``from time import time`` bound
before we started is covered too. time-machine asks the innermost traveller on its stack for the
time; ours asks the session's mode. Monotonic and performance counters stay live.

Not the agent's reads, so never recorded or served: OpenTelemetry's own span timestamps,
AgentTrace's own code, logging's record timestamps, and whatever a client does inside an
intercepted live call (a served call does not run that code at all).
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from .. import _context
from .._patches import Patches
from . import mode as _mode

try:
    import _time_machine
    import time_machine
except ImportError:  # pragma: no cover - a declared dependency
    _time_machine = None
    time_machine = None

# Callers whose clock reads belong to the machinery, not to the agent.
_OWN_CALLERS = ("opentelemetry", "agenttrace", "logging", "time_machine")


def real_time_ns() -> int:
    """The real wall clock, whatever is patched."""
    if _time_machine is not None and time_machine.traveller_stack:
        return _time_machine.original_time_ns()
    import time

    return time.time_ns()


class _Traveller:
    """What time-machine asks for the time (its ``Traveller`` interface: ``time_ns``)."""

    _destination_tzname = None  # time-machine's own travellers may move the time zone; not us

    def time_ns(self) -> int:
        real = _time_machine.original_time_ns()
        mode = _mode.active()
        if mode is None or _context.unreplayed():
            return real
        caller = sys._getframe(1).f_globals.get("__name__") or ""
        if caller.startswith(_OWN_CALLERS):
            return real
        return mode.wall_clock(real)

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass


def install(patches: Patches) -> bool:
    """Route wall-clock reads through the active mode; False when time-machine is unusable."""
    stack = getattr(time_machine, "traveller_stack", None)
    if _time_machine is None or not isinstance(stack, list):
        return False
    traveller = _Traveller()
    if not stack:
        _time_machine.patch()
    stack.append(traveller)
    # uuid1 reads the clock through time.time_ns() only when its C fast path is off (as
    # time-machine does while travelling): so uuid1 values replay too.
    saved: dict[str, Any] = {
        name: getattr(uuid, name) for name in ("_generate_time_safe", "_UuidCreate")
    }
    for name in saved:
        setattr(uuid, name, None)

    def undo() -> None:
        if traveller in stack:
            stack.remove(traveller)
        if not stack:
            _time_machine.unpatch()
            for name, value in saved.items():
                setattr(uuid, name, value)

    patches.on_undo(undo)
    return True
