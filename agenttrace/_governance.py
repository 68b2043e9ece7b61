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

from .errors import GovernanceViolation, ReplayDivergence, SandboxEscape

# Audit events that mean "the agent is reaching the real world".
_DNS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
_NET = {"socket.connect", "socket.sendto", "socket.sendmsg"}
_PROC = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}
_WATCHED = frozenset(_DNS | _NET | _PROC)

_hook_installed = False
_active: Governance | None = None  # the hook's gate; None = off (record mode, after shutdown)


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
            _stderr(f"agenttrace WARNING [replay, relaxed]: {message}")

    def divergence(self, message: str) -> None:
        self.violate(ReplayDivergence, message)

    def escape(self, message: str) -> None:
        self.violate(SandboxEscape, message)

    # -- the audit hook ------------------------------------------------------------------------

    def activate(self) -> None:
        global _active, _hook_installed
        _active = self
        if not _hook_installed:
            sys.addaudithook(_audit)  # hooks cannot be removed: install once, gate on _active
            _hook_installed = True

    def deactivate(self) -> None:
        global _active
        if _active is self:
            _active = None

    def exempt(self) -> _Exempt:
        """Our own work in this thread (writing the replayed trace) is not the agent escaping."""
        return _Exempt(self._local)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if getattr(self._local, "exempt", 0) or (self.passthrough and not self.strict):
            return
        if not is_instrumentation_enabled():
            # An OpenTelemetry exporter at work (the SDK suppresses instrumentation in its export
            # threads): the app's own telemetry, not the agent leaving the sandbox.
            return
        if event in _PROC:
            what = _describe_proc(event, args)
            hint = "subprocesses are outside the recording"
        elif event in _DNS:
            what = f"DNS lookup {event.split('.', 1)[1]}({_first(args)!r})"
            hint = "a raw lookup outside an intercepted HTTP call was not recorded"
        else:
            if _is_local_ipc(args):
                return
            what = f"{event}({_address(args)})"
            hint = "raw sockets are outside the recording"
        self.escape(
            f"{what} during replay — {hint}. Record the run again with this code path, or use "
            "governance_level='relaxed' to let it through with a warning."
        )

    # -- the end of the run --------------------------------------------------------------------

    def report(self, unplayed: list[dict[str, Any]]) -> bool:
        """Print the end-of-replay report; True when the run must fail."""
        if unplayed:
            names = ", ".join(
                f"#{e['seq']} {e['request']['method']} {e['request']['url']}"
                + (f" (step {e['step']!r})" if e.get("step") else "")
                for e in unplayed[:5]
            )
            more = f" and {len(unplayed) - 5} more" if len(unplayed) > 5 else ""
            message = f"{len(unplayed)} recorded call(s) were never made: {names}{more}"
            with self._lock:
                self.violations.append(f"ReplayDivergence: {message}")
            if not self.strict:
                _stderr(f"agenttrace WARNING [replay, relaxed]: {message}")
        if not self.violations:
            return False
        if self.strict:
            lines = [
                f"agenttrace: replay under governance FAILED with {len(self.violations)} violation(s):"
            ]
            lines += [f"  - {v}" for v in self.violations]
            _stderr("\n".join(lines))
            return True
        return False


class _Exempt:
    def __init__(self, local: threading.local) -> None:
        self._local = local

    def __enter__(self) -> None:
        self._local.exempt = getattr(self._local, "exempt", 0) + 1

    def __exit__(self, *exc: object) -> None:
        self._local.exempt -= 1


def _audit(event: str, args: tuple[Any, ...]) -> None:
    gate = _active
    if gate is None or event not in _WATCHED:
        return
    gate._audit(event, args)


def _first(args: tuple[Any, ...]) -> Any:
    return args[0] if args else None


def _address(args: tuple[Any, ...]) -> str:
    return repr(args[1]) if len(args) > 1 else "?"


def _is_local_ipc(args: tuple[Any, ...]) -> bool:
    # A Unix-domain socket path (e.g. a logging or event-loop socket) is not the network.
    return len(args) > 1 and isinstance(args[1], (str, bytes))


def _describe_proc(event: str, args: tuple[Any, ...]) -> str:
    if event == "subprocess.Popen" and len(args) > 1:
        return f"subprocess {args[1]!r}"
    if event == "os.system":
        return f"os.system({_first(args)!r})"
    return f"{event}({_first(args)!r})"


def _stderr(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:  # a closed stderr at exit must not turn into an error of ours
        os.write(2, (text + "\n").encode("utf-8", "replace"))
