"""What Python runs without an audit event, given one.

``_posixsubprocess.fork_exec`` forks and executes a program in C: ``subprocess.Popen`` raises
``subprocess.Popen`` before calling it, but ``multiprocessing.util.spawnv_passfds`` (the spawn
and forkserver start methods) and any direct caller raise nothing. Wrapped here, it raises
``agenttrace.fork_exec`` first, which the audit hook judges like any other exec. The modules
patched here are imported now, so a sealed replay can refuse importing them afresh later.
"""

from __future__ import annotations

import sys
from typing import Any

from .._patches import Patches


def audit_fork_exec(patches: Patches) -> None:
    try:
        import _posixsubprocess
    except ImportError:  # not a POSIX system
        return
    import subprocess

    original = _posixsubprocess.fork_exec
    audit, frame = sys.audit, sys._getframe
    # ``subprocess.Popen`` was judged already, under its own name, when it calls from here.
    popen = getattr(subprocess.Popen, "_execute_child", None)
    judged = getattr(popen, "__code__", None)

    def fork_exec(*args: Any, **kwargs: Any) -> Any:
        if frame(1).f_code is not judged:
            audit("agenttrace.fork_exec", args[0] if args else None)
        return original(*args, **kwargs)

    patches.replace(_posixsubprocess, "fork_exec", fork_exec)
