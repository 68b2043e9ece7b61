"""The audit hook in a session that does not seal its process (tests, the pytest plugin): armed
from start to stop, exempting AgentTrace's own export threads by identity and nothing else."""

from __future__ import annotations

import sys
import threading

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from agenttrace.errors import SandboxEscape
from agenttrace.governance import Governance, active_layers, hook
from agenttrace.governance.record import SharedRecord

OUTSIDE = ("socket.connect", object(), ("203.0.113.7", 443))  # raised by hand: nothing is sent


@pytest.fixture
def armed():
    gate = Governance(strict=True)
    shared = SharedRecord()
    assert hook.arm(gate, shared)
    try:
        yield gate
    finally:
        hook.disarm(gate)


def test_an_armed_gate_refuses_even_under_suppressed_instrumentation(armed):
    with suppress_instrumentation(), pytest.raises(SandboxEscape, match="203.0.113.7"):
        sys.audit(*OUTSIDE)
    assert len(armed.violations) == 1
    assert active_layers() == ("audit hook",)
    assert armed.report() is True


def test_only_our_own_export_threads_are_exempt_by_identity(armed):
    outcome: dict[str, object] = {}

    def export() -> None:
        sys.audit(*OUTSIDE)
        outcome["ours"] = "sent"

    def agent() -> None:
        try:
            sys.audit(*OUTSIDE)
        except SandboxEscape:
            outcome["agent"] = "refused"

    ours = threading.Thread(target=export, name="agenttrace-export")
    hook.exempt_thread(ours)
    impostor = threading.Thread(target=agent, name="agenttrace-export")  # the name is no proof
    for thread in (ours, impostor):
        thread.start()
        thread.join()
    assert outcome == {"ours": "sent", "agent": "refused"}


def test_a_disarmed_gate_judges_nothing():
    gate = Governance(strict=True)
    assert hook.arm(gate, SharedRecord())
    hook.disarm(gate)
    sys.audit(*OUTSIDE)
    assert gate.violations == [] and active_layers() == ()
