"""Every way out of a sealed replay goes through its verdict.

The session's own ``atexit`` handler covers a normal end and ``sys.exit``. Agent code can also
leave through ``os._exit(0)`` (often after ``except BaseException``), clear the ``atexit``
handlers (``atexit._clear()``), or raise in one; a forked child always ends in ``os._exit``.
Here ``os._exit`` (and ``posix._exit``, the same function under its own module) and
``atexit._clear`` are wrapped, and one more ``atexit`` handler is kept registered, so each path
asks ``status`` for the exit status: non-zero, with the report on stderr, whenever a violation
happened. Patches go through the session's :class:`~agenttrace._patches.Patches` and stack with
any other wrapper of ``os._exit`` (crash-proof recording wraps it too).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .._patches import Patches


def guard_exits(patches: Patches, status: Callable[[Any], Any]) -> None:
    """Route ``os._exit``, ``posix._exit`` and the end of ``atexit`` through ``status``.

    ``status`` must be the hook's own (a closure): like it, these wrappers keep what they use
    in their closure, so resetting module attributes cannot turn an exit back into exit 0.
    """
    real_exit, write, streams = os._exit, os.write, sys
    clear, register = atexit._clear, atexit.register

    def flush() -> None:
        for stream in (streams.stdout, streams.stderr):
            try:
                stream.flush()
            except BaseException:
                pass

    def _exit(code: int = 0) -> None:
        try:
            flush()
            code = status(code)
        except BaseException:
            write(2, b"agenttrace: governance could not judge this exit; failing it\n")
            code = code or 1
        real_exit(code)

    def at_exit() -> None:
        try:
            code = status(0)
        except BaseException:
            code = 1
        if code != 0:
            flush()
            real_exit(code)

    def _clear() -> None:
        clear()
        register(at_exit)

    patches.replace(os, "_exit", _exit)
    patches.replace(_os_module(), "_exit", _exit)  # os._exit is this module's, under another name
    patches.replace(atexit, "_clear", _clear)
    register(at_exit)
    patches.on_undo(lambda: atexit.unregister(at_exit))


def _os_module() -> ModuleType:
    return sys.modules["posix" if os.name == "posix" else "nt"]
