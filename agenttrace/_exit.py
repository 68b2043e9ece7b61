"""How the process ends, as the session sees it — and the exit status stays what it would be.

- An uncaught exception (``sys.excepthook``) or ``sys.exit`` with a non-zero status fails the
  open runs; ``KeyboardInterrupt`` (SIGINT under Python's own handler, which stays in place)
  ends them ``terminated``. The session stops at exit (``atexit``).
- ``os._exit(n)`` (patched): the runs end ``terminated`` and are written, then the process exits
  with ``n``.
- SIGTERM, when the agent has no handler of its own: the runs end ``terminated`` and are written,
  then the signal is raised again under its default disposition, so the process dies of it as it
  would have (-15, or 143 in a shell). A handler the agent installs later simply replaces ours.
- SIGKILL, the OOM killer, a power cut: nothing runs. The run's journal
  (``agenttrace.exporters.journal``) is finalised by the next AgentTrace process.

Only the process that started the session does any of this: a forked child inherits the patches
and the handler, and passes straight through them.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ._patches import Patches

logger = logging.getLogger("agenttrace")


class Ending(Protocol):
    """What of the session the exit paths use."""

    failure: str | None
    exit_code: int | None
    ending: dict[str, Any] | None
    failed: bool
    stop_timeout: float

    def stop(self) -> None: ...

    def terminate(self, how: dict[str, Any]) -> None: ...


def track(session: Ending, patches: Patches) -> None:
    """Watch every way the process can end, for ``session`` (its patches undo it all)."""
    pid = os.getpid()
    interrupted = _exceptions(session, patches)
    _os_exit(session, patches, pid)
    _sigterm(session, patches, pid)
    _at_exit(session, patches, interrupted)


def _exceptions(session: Ending, patches: Patches) -> list[bool]:
    """Uncaught exceptions and ``sys.exit`` status: atexit learns of neither. Returns whether
    a ``KeyboardInterrupt`` went uncaught (``[True]`` once it did)."""
    original_excepthook = sys.excepthook
    original_exit = sys.exit
    interrupted = [False]

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        if issubclass(exc_type, KeyboardInterrupt):
            interrupted[0] = True
            if session.ending is None:
                session.ending = {"signal": "SIGINT"}
        elif session.failure is None:
            session.failure = f"{exc_type.__name__}: {exc}"
        original_excepthook(exc_type, exc, tb)

    def exit(status: Any = None) -> None:  # noqa: A001
        if status not in (None, 0):
            session.exit_code = status if isinstance(status, int) else 1
            if session.failure is None:
                session.failure = f"SystemExit: {status}"
        original_exit(status)

    patches.replace(sys, "excepthook", excepthook)
    patches.replace(sys, "exit", exit)
    return interrupted


def _os_exit(session: Ending, patches: Patches, pid: int) -> None:
    # What the wrapper uses is kept in its closure: agent code resetting our modules' globals
    # (a governed replay's escape tests do) must not keep the process from exiting.
    original, getpid, quietly = os._exit, os.getpid, _quietly

    def _exit(status: int) -> None:
        try:
            if getpid() == pid:
                quietly(session.terminate, {"by": "os._exit", "exit_status": status})
        finally:
            original(status)

    patches.replace(os, "_exit", _exit)
    # the same function under its own module's name (governance.exit wraps both too)
    patches.replace(sys.modules["posix" if os.name == "posix" else "nt"], "_exit", _exit)


def _sigterm(session: Ending, patches: Patches, pid: int) -> None:
    """Our handler only where the agent has none (the default disposition), and only from the
    main thread (the only one that may set a handler)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # the agent's own handler (or SIG_IGN) decides what SIGTERM does
    original_exit, getpid, kill, quietly = os._exit, os.getpid, os.kill, _quietly
    set_handler, default, thread = signal.signal, signal.SIG_DFL, threading.Thread

    def on_sigterm(signum: int, frame: Any) -> None:
        try:
            if getpid() == pid:
                # Python runs this in the main thread between two bytecodes, maybe while it
                # holds one of our locks: the runs are written from another thread, in a bound.
                how = {"signal": signal.Signals(signum).name}
                writer = thread(
                    target=quietly,
                    args=(session.terminate, how),
                    name="agenttrace-terminate",
                    daemon=True,
                )
                writer.start()
                writer.join(session.stop_timeout)
        finally:
            set_handler(signum, default)
            kill(getpid(), signum)  # dies of the signal, as without AgentTrace
            original_exit(128 + signum)  # only if the signal is blocked in every thread

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        # Left alone if the agent installed its own since; a session stopped by the handler
        # itself runs this off the main thread, where the handler resets SIGTERM anyway.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is on_sigterm
        ):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    patches.on_undo(restore)


def _at_exit(session: Ending, patches: Patches, interrupted: list[bool]) -> None:
    def at_exit() -> None:
        try:
            session.stop()
        except Exception:
            logger.exception("agenttrace: error at exit")
        if interrupted[0]:
            _keep_sigint_exit()
        if session.failed:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
            finally:
                os._exit(session.exit_code if session.exit_code not in (None, 0) else 1)

    atexit.register(at_exit)
    patches.on_undo(lambda: atexit.unregister(at_exit))


def _keep_sigint_exit() -> None:
    """After an uncaught ``KeyboardInterrupt`` CPython exits by SIGINT (-2, 130 in a shell),
    unless source code was evaluated since: every ``exec`` of a string (a dataclass, a
    namedtuple made while our stop imports what it needs) clears the flag that says so. Raising
    one the same way sets it again, as it was."""
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass


def _quietly(action: Callable[[dict[str, Any]], None], how: dict[str, Any]) -> None:
    """Nothing of ours may stand between the agent and its exit."""
    try:
        action(how)
    except BaseException:
        logger.exception("agenttrace: could not write the runs while the process ends")
