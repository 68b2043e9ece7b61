"""The governance gate: what happens when replay leaves the recording or the sandbox.

``relaxed`` warns on stderr and lets the call through; ``governance`` raises. Either way each
violation goes into a sticky record, so a run whose violation was swallowed by agent code
(``except BaseException``, a framework's catch-all) still fails at exit. Once the audit hook
arms a gate (:func:`agenttrace.governance.hook.arm`), the record and the report are the hook's:
it also holds what the hook refused itself, what forked children and the kernel layer reported,
and it cannot be reset through the gate.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import GovernanceViolation, ReplayDivergence, SandboxEscape
from .events import escape_message


class Governance:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.passthrough = 0  # live calls let through in relaxed mode (their sockets are expected)
        self._local = threading.local()
        # Set by the audit hook when it arms this gate: where violations go, who reports them.
        self._sink: Callable[[str], None] | None = None
        self._report: Callable[[], bool] | None = None

    def attach(self, sink: Callable[[str], None], report: Callable[[], bool]) -> None:
        self._sink, self._report = sink, report

    def violate(self, exc_type: type[GovernanceViolation], message: str) -> None:
        """Record a violation; raise it under governance, warn (once per message) when relaxed."""
        entry = f"{exc_type.__name__}: {message}"
        with self._lock:
            self.violations.append(entry)
            first = message not in self._warned
            self._warned.add(message)
        if self._sink is not None:
            self._sink(entry)
        if self.strict:
            raise exc_type(message)
        if first:
            stderr(f"agenttrace WARNING [replay, relaxed]: {message}")

    def divergence(self, message: str) -> None:
        self.violate(ReplayDivergence, message)

    def escape(self, message: str) -> None:
        self.violate(SandboxEscape, message)

    def note(self, message: str) -> None:
        """A violation found after the fact (calls never made): recorded, warned when relaxed."""
        entry = f"ReplayDivergence: {message}"
        with self._lock:
            self.violations.append(entry)
        if self._sink is not None:
            self._sink(entry)
        if not self.strict:
            stderr(f"agenttrace WARNING [replay, relaxed]: {message}")

    def exempt(self) -> _Exempt:
        """Our own work in this thread (a machine probe, a relaxed lookup) is not the agent
        escaping. Not honoured once a replay sealed the process (see ``hook.arm``)."""
        return _Exempt(self._local)

    def exempted(self) -> bool:
        return bool(getattr(self._local, "exempt", 0))

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        """Judge one audit event on this gate alone (the hook judges for an armed gate)."""
        if self.exempted() or (self.passthrough and not self.strict):
            return
        message = escape_message(event, args, strict=self.strict)
        if message is not None:
            self.escape(message)

    def report(self) -> bool:
        """Print the end-of-replay report; True when the run must fail."""
        if self._report is not None:
            return self._report()
        if not self.violations or not self.strict:
            return False
        lines = [
            f"agenttrace: replay under governance FAILED with {len(self.violations)} violation(s):"
        ]
        lines += [f"  - {v}" for v in self.violations]
        stderr("\n".join(lines))
        return True


class _Exempt:
    def __init__(self, local: threading.local) -> None:
        self._local = local

    def __enter__(self) -> None:
        self._local.exempt = getattr(self._local, "exempt", 0) + 1

    def __exit__(self, *exc: object) -> None:
        self._local.exempt -= 1


def stderr(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:  # a closed stderr at exit must not turn into an error of ours
        os.write(2, (text + "\n").encode("utf-8", "replace"))
