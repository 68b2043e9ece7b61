"""Closing the sandbox around a replay: machine facts first, then every layer, then the gate.

SDKs describe the machine in request headers (the OpenAI and Anthropic SDKs call
``platform.processor()``, which runs ``uname -p`` once per process): the same fact in record and
replay, so it must not count as a sandbox escape; it is gathered before the sandbox closes.
(``uuid.getnode()``, which may run ``ip link``, is served from the recording by the Player; a
sealed replay learns this machine's too, for recordings made before nodes were recorded.)

The layers, outermost first (``hook.active_layers()`` names those in force):

- the audit hook: Python's sockets, DNS, subprocesses, exec, ``ctypes`` lookups of libc's
  network/exec/exit functions, and ``_posixsubprocess.fork_exec`` (``native``);
- in a sealed replay, the exits (``exit``) and the kernel: a seccomp filter (``seccomp``), or
  where the kernel or the machine has none, a scan for internet sockets opened natively
  (``sockets``).
"""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Callable

from .._patches import Patches
from . import hook, native, seccomp, sockets
from .exit import guard_exits
from .gate import Governance
from .record import ENV, SharedRecord


def warm_platform_caches() -> None:
    """Fill the platform module's caches before the sandbox closes."""
    for probe in (platform.uname, platform.processor, platform.platform, platform.machine):
        try:
            probe()
        except Exception:
            pass


def close(
    gate: Governance,
    patches: Patches,
    *,
    seal: bool = False,
    finish: Callable[[], None] | None = None,
) -> tuple[str, ...]:
    """Close the sandbox for a replay and arm ``gate``; returns the layers in force.

    ``seal`` (a governed replay that owns its process): the layers stay for the life of the
    process — their patches are never undone, a seccomp filter cannot be — and every exit goes
    through the verdict, which runs ``finish`` (the session's stop) first.
    """
    warm_platform_caches()
    seal = seal and gate.strict
    if seal:
        uuid.getnode()  # nothing is exempt once sealed: learn the machine's node now
        patches = Patches()  # held for the life of the process, never undone
    native.audit_fork_exec(patches)
    inherited = os.environ.get(ENV)
    shared = SharedRecord(inherited)
    if not inherited:
        os.environ[ENV] = shared.path  # spawned Python children report here
        patches.on_undo(lambda: os.environ.pop(ENV, None))
    kernel, missing = seccomp.install(shared.path) if seal else (None, "")
    if seal:
        guard_exits(patches, hook.exit_verdict())
    if not hook.arm(gate, shared, sealed=seal, child=bool(inherited), finish=finish):
        if not inherited:
            shared.remove()
        return hook.active_layers()  # an earlier replay sealed this process: its gate holds
    hook.add_layer("ctypes symbols")
    hook.add_layer("_posixsubprocess.fork_exec")
    if seal:
        hook.add_layer("exit guard")
        if kernel is not None:
            hook.add_layer(kernel)
        elif sockets.available():
            hook.add_layer(f"socket scan (no seccomp: {missing})", sockets.scanner())
        else:
            hook.add_layer(f"none below Python (no seccomp: {missing}; no /proc)")
    return hook.active_layers()
