"""The audit hook: installed once per process (hooks cannot be removed), gated on who is active.

Two users: the gate of a running governed replay, and the distro's pre-start guard (refuse the
outside world in a process asked to replay until AgentTrace has started, should loading the
instrumentors fail). Both watch the same events (``events.WATCHED``).
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import SandboxEscape
from .events import WATCHED
from .gate import Governance

_installed = False
_gate: Governance | None = None
_guard_reason: str | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in WATCHED:
        return
    if _guard_reason is not None:
        raise SandboxEscape(f"{event} while {_guard_reason}")
    gate = _gate
    if gate is not None:
        gate.audit(event, args)


def _install() -> None:
    global _installed
    if not _installed:
        sys.addaudithook(_audit)
        _installed = True


def activate(gate: Governance) -> None:
    global _gate
    _install()
    _gate = gate


def deactivate(gate: Governance) -> None:
    global _gate
    if _gate is gate:
        _gate = None


def guard(reason: str) -> None:
    """Refuse every watched event, saying ``reason``, until :func:`unguard`."""
    global _guard_reason
    _install()
    _guard_reason = reason


def unguard() -> None:
    global _guard_reason
    _guard_reason = None
