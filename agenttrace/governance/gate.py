"""The governance gate: what happens when replay leaves the recording or the sandbox.

``relaxed`` warns on stderr and lets the call through; ``governance`` raises. Either way each
violation goes into a sticky record, so a run whose violation was swallowed by agent code
(``except BaseException``, a framework's catch-all) still fails at exit.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ..errors import GovernanceViolation, ReplayDivergence, SandboxEscape
from . import events


class Governance:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.passthrough = 0  # live calls let through in relaxed mode (their sockets are expected)
        self._local = threading.local()

    def violate(self, exc_type: type[GovernanceViolation], message: str) -> None:
        """Record a violation; raise it under governance, warn (once per message) when relaxed."""
        with self._lock:
            self.violations.append(f"{exc_type.__name__}: {message}")
            first = message not in self._warned
            self._warned.add(message)
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
        with self._lock:
            self.violations.append(f"ReplayDivergence: {message}")
        if not self.strict:
            stderr(f"agenttrace WARNING [replay, relaxed]: {message}")

    def exempt(self) -> _Exempt:
        """Our own work in this thread (writing the replayed trace) is not the agent escaping."""
        return _Exempt(self._local)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        """An audit event of the watched list happened while this gate is active."""
        if getattr(self._local, "exempt", 0) or (self.passthrough and not self.strict):
            return
        if not is_instrumentation_enabled():
            # An OpenTelemetry exporter at work (the SDK suppresses instrumentation in its export
            # threads): the app's own telemetry, not the agent leaving the sandbox.
            return
        described = events.describe(event, args)
        if described is None:
            return
        what, hint = described
        self.escape(
            f"{what} during replay — {hint}. Record the run again with this code path, or use "
            "governance_level='relaxed' to let it through with a warning."
        )

    def report(self) -> bool:
        """Print the end-of-replay report; True when the run must fail."""
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
