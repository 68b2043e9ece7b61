"""The audit hook: installed once per process (hooks cannot be removed), deciding from a closure.

Two users: the gate of a running replay, and the distro's pre-start guard (refuse the outside
world in a process asked to replay until AgentTrace has started, should loading the
instrumentors fail). Both judge the same events (``events.WATCHED``).

What the hook decides with — which gate is armed, whether it is strict, the violation record,
the exception it raises, how it writes — is bound in the closure :func:`_build` returns, not
kept in module attributes: agent code can reach and reset every attribute of every module of
ours, and none of that reaches in here. Whatever it breaks elsewhere (a describing function, a
module it uses) makes the hook refuse the event it was judging, never let it through.

A replay that owns the process (``Session(owns_exit=True)`` under ``governance``: ``init()``,
``opentelemetry-instrument``, ``agenttrace replay``; not inside a pytest run, where ``init()`` is
one test's session among others) **seals** it: from then on the gate cannot be
disarmed (not even by stopping the session), nothing is exempt (machine facts were gathered
before), and modules governance patched cannot be imported afresh. Sessions that do not own the
process (tests, the pytest plugin) arm and disarm around their run and exempt AgentTrace's own
export threads by identity; they guard against accidents, not against code that goes looking.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..errors import GovernanceViolation, SandboxEscape
from .events import CTYPES, IMPORT, SOCKET_NEW, WATCHED, escape_message, is_probe
from .gate import Governance, stderr
from .record import SharedRecord


def _build() -> SimpleNamespace:  # noqa: C901 - one closure on purpose (see the module docstring)
    watched, import_event, socket_new = WATCHED, IMPORT, SOCKET_NEW
    unscanned = CTYPES | {SOCKET_NEW, IMPORT}
    judge_event, probe = escape_message, is_probe
    Refused = PermissionError
    Escape, Violation = SandboxEscape, GovernanceViolation
    getpid, write, add_hook = os.getpid, os.write, sys.addaudithook
    current_thread = threading.current_thread
    own_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
    records: list[str] = []
    state: dict[str, Any] = {
        "installed": False,
        "gate": None,
        "strict": False,
        "sealed": False,
        "guard": None,
        "pid": getpid(),
        "child": False,  # a forked or spawned child: its records go to the shared file too
        "shared": None,
        "finish": None,
        "scan": None,
        "layers": [],
        "shown": [0, 0],  # own records and others' already printed
    }

    def record(entry: str) -> None:
        records.append(entry)
        shared = state["shared"]
        if state["child"] and shared is not None:
            try:
                shared.append(getpid(), "python", entry)
            except BaseException:
                write(2, b"agenttrace: could not write to the governance record\n")

    def judge(gate: Governance, event: str, args: tuple[Any, ...]) -> str | None:
        if not state["sealed"] and (gate.exempted() or current_thread() in own_threads):
            return None
        strict = state["strict"]
        if not strict and gate.passthrough:
            return None
        scan = state["scan"]
        if scan is not None and event not in unscanned:
            for found in scan():
                record(f"SandboxEscape: {found}")
        return judge_event(event, args, strict=strict, sealed=state["sealed"])

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event not in watched or (event == import_event and not state["sealed"]):
            return
        reason = state["guard"]
        gate = state["gate"]
        if reason is None and gate is None:
            return
        try:
            if reason is not None:
                if judge_event(event, args, strict=False) is not None:
                    raise Escape(f"{event} while {reason}")
                return
            if event == socket_new and state["sealed"] and probe(event, args):
                raise Refused(13, "internet sockets are closed in a governed replay")
            message = judge(gate, event, args)
        except (Violation, Refused):
            raise
        except BaseException as exc:  # our judging broke (or was broken): refuse, never pass
            message = f"{event} could not be checked ({type(exc).__name__}: {exc}); refused"
        if message is None:
            return
        if not state["strict"]:
            gate.violate(Escape, message)  # relaxed: a warning, once per message
            return
        entry = f"SandboxEscape: {message}"
        record(entry)
        try:
            gate.violations.append(entry)  # what the session shows; the record above decides
        except BaseException:
            pass
        raise Escape(message)

    def forked() -> None:
        # The child has the parent's memory: its own record starts empty and is also written
        # to the shared file, for the parent to report.
        if state["gate"] is not None:
            records.clear()
            state["shown"] = [0, 0]
            state["child"] = True
            state["finish"] = None

    def install() -> None:
        if not state["installed"]:
            add_hook(audit)
            if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
                os.register_at_fork(after_in_child=forked)
            state["installed"] = True

    def arm(
        gate: Governance,
        shared: SharedRecord,
        *,
        sealed: bool = False,
        child: bool = False,
        finish: Callable[[], None] | None = None,
    ) -> bool:
        """Arm ``gate``; False when an earlier replay sealed the process (its gate stays)."""
        install()
        if state["sealed"]:
            return False
        records.clear()
        state.update(
            gate=gate,
            strict=bool(gate.strict),
            sealed=bool(sealed and gate.strict),
            pid=getpid(),
            child=child,
            shared=shared,
            finish=finish,
            scan=None,
            layers=["audit hook"],
            shown=[0, 0],
        )
        gate.attach(record, report)
        return True

    def disarm(gate: Governance) -> None:
        if state["sealed"] or state["gate"] is not gate:
            return
        state["gate"] = None
        shared = state["shared"]
        if shared is not None and not state["child"]:
            shared.remove()
        state["shared"] = None

    def others() -> list[str]:
        shared = state["shared"]
        if shared is None or state["child"]:
            return []
        return shared.read(state["pid"])

    def report() -> bool:
        """Print what was not printed yet; True when the run must fail."""
        try:
            scan = state["scan"]
            for found in scan() if scan is not None else ():
                record(f"SandboxEscape: {found}")
            theirs = others()
        except BaseException as exc:  # broken from outside: what it held may be lost, so fail
            theirs = [f"SandboxEscape: the shared record could not be read ({exc!r})"]
        total = len(records) + len(theirs)
        if not state["strict"] or total == 0:
            return False
        own_shown, their_shown = state["shown"]
        new = records[own_shown:] + theirs[their_shown:]
        if new:
            if state["child"]:
                head = f"agenttrace: governed child process {getpid()}: {len(new)} violation(s), reported to its parent:"
            elif own_shown or their_shown:
                head = f"agenttrace: {len(new)} more governance violation(s):"
            else:
                head = f"agenttrace: replay under governance FAILED with {total} violation(s):"
            lines = [head, *(f"  - {v}" for v in new)]
            lines.append(f"  governance layers: {', '.join(state['layers'])}")
            state["shown"] = [len(records), len(theirs)]
            try:
                stderr("\n".join(lines))
            except BaseException:
                write(2, ("\n".join(lines) + "\n").encode("utf-8", "replace"))
        return True

    def exit_status(code: Any) -> Any:
        """The status a process of a sealed replay exits with: ``code``, unless a violation
        happened (here, in a child, in the kernel), then non-zero. Stops the session first."""
        finish = state["finish"]
        if finish is not None and not state["child"]:
            state["finish"] = None
            try:
                finish()
            except BaseException as exc:
                record(f"SandboxEscape: the end of the replay failed ({type(exc).__name__}: {exc})")
        try:
            failed = report()
        except BaseException as exc:
            write(2, f"agenttrace: governance report failed: {exc!r}\n".encode())
            failed = True
        if failed and not (isinstance(code, int) and code != 0):
            return 1
        return code

    def guard(reason: str | None) -> None:
        install()
        state["guard"] = reason

    def exempt_thread(thread: threading.Thread) -> None:
        if not state["sealed"]:
            own_threads.add(thread)

    def add_layer(name: str, scan: Callable[[], list[str]] | None = None) -> None:
        state["layers"].append(name)
        if scan is not None:
            state["scan"] = scan

    return SimpleNamespace(
        arm=arm,
        disarm=disarm,
        guard=guard,
        exempt_thread=exempt_thread,
        add_layer=add_layer,
        layers=lambda: tuple(state["layers"]) if state["gate"] is not None else (),
        sealed=lambda: state["sealed"],
        exit_status=exit_status,
    )


_core = _build()


def arm(
    gate: Governance,
    shared: SharedRecord,
    *,
    sealed: bool = False,
    child: bool = False,
    finish: Callable[[], None] | None = None,
) -> bool:
    """Arm ``gate``: the hook judges every watched event against it. ``sealed`` (a strict gate
    of the replay that owns the process) makes that permanent. ``finish`` stops the session
    when the process exits through :func:`exit_status`."""
    return _core.arm(gate, shared, sealed=sealed, child=child, finish=finish)


def disarm(gate: Governance) -> None:
    """Stop judging against ``gate`` (never once the process is sealed)."""
    _core.disarm(gate)


def guard(reason: str) -> None:
    """Refuse every watched event, saying ``reason``, until :func:`unguard`."""
    _core.guard(reason)


def unguard() -> None:
    _core.guard(None)


def exempt_thread(thread: threading.Thread) -> None:
    """AgentTrace's own export thread: its I/O is not the agent's (ignored once sealed)."""
    _core.exempt_thread(thread)


def add_layer(name: str, scan: Callable[[], list[str]] | None = None) -> None:
    """Name a layer now enforcing the armed gate; ``scan`` finds escapes after the fact."""
    _core.add_layer(name, scan)


def active_layers() -> tuple[str, ...]:
    """The layers enforcing the armed gate, outermost first; () when none is armed."""
    return _core.layers()


def sealed() -> bool:
    return _core.sealed()


def exit_verdict() -> Callable[[Any], Any]:
    """The function a sealed replay's process asks for its exit status: ``code``, unless a
    violation happened (here, in a child, in the kernel), then non-zero with the report. The
    hook's own closure, for the exit guards to hold (``governance.exit``)."""
    return _core.exit_status
