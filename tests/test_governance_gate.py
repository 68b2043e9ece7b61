"""The governance gate on its own: what raises, what warns, what is not the outside world."""

from __future__ import annotations

import socket

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from agenttrace.errors import GovernanceViolation, ReplayDivergence, SandboxEscape
from agenttrace.governance import Governance
from agenttrace.governance.events import WATCHED, describe


def test_governance_raises_a_base_exception_and_keeps_a_sticky_record():
    gate = Governance(strict=True)
    with pytest.raises(SandboxEscape) as raised:
        gate.audit("socket.connect", (object(), ("203.0.113.7", 443)))
    assert isinstance(raised.value, GovernanceViolation) and not isinstance(raised.value, Exception)
    assert "socket.connect(('203.0.113.7', 443)) during replay" in str(raised.value)
    with pytest.raises(ReplayDivergence):
        gate.divergence("changed")
    assert len(gate.violations) == 2
    assert gate.report() is True


def test_relaxed_warns_once_per_message_and_does_not_fail(capsys):
    gate = Governance(strict=False)
    for _ in range(3):
        gate.audit("subprocess.Popen", ("ls", ["ls", "-l"], None, None))
    err = capsys.readouterr().err
    assert err.count("agenttrace WARNING [replay, relaxed]: subprocess ['ls', '-l']") == 1
    assert len(gate.violations) == 3 and gate.report() is False


def test_unix_sockets_exemptions_and_pass_through_are_not_escapes():
    gate = Governance(strict=True)
    gate.audit("socket.connect", (object(), "/run/app.sock"))  # AF_UNIX path
    with gate.exempt():
        gate.audit("socket.getaddrinfo", ("example.test", 443, 0, 0, 0, 0))
    assert gate.violations == []
    relaxed = Governance(strict=False)
    relaxed.passthrough = 1  # a relaxed live call's own sockets
    relaxed.audit("socket.connect", (object(), ("203.0.113.7", 80)))
    assert relaxed.violations == []


# For each watched event, arguments that mean the outside world when a sealed replay judges them.
OUTSIDE = {
    "socket.__new__": (object(), socket.AF_INET, socket.SOCK_STREAM, 0),
    "ctypes.dlsym": (object(), "connect"),
    "ctypes.dlsym/handle": (0, "__libc_system"),
    "import": ("posix", None, [], [], []),
}


def test_one_watched_list_and_each_event_is_described():
    assert {"socket.connect", "socket.sendto", "socket.sendmsg", "os.posix_spawn"} <= WATCHED
    assert {"agenttrace.fork_exec", "ctypes.dlsym", "socket.__new__"} <= WATCHED
    for event in WATCHED:
        described = describe(event, OUTSIDE.get(event, ("a", ("203.0.113.7", 1))), sealed=True)
        assert described is not None and all(described), event


def test_what_is_not_the_outside_world():
    assert describe("socket.__new__", (object(), socket.AF_UNIX, 1, 0), sealed=True) is None
    assert describe("socket.__new__", (object(), -1, -1, -1), sealed=True) is None  # fromfd
    assert describe("socket.__new__", OUTSIDE["socket.__new__"]) is None  # not sealed
    assert describe("ctypes.dlsym", (object(), "getpid")) is None
    assert describe("ctypes.dlsym", (object(), 12)) is None  # by ordinal
    assert describe("import", ("json", None, [], [], []), sealed=True) is None
    assert describe("import", OUTSIDE["import"]) is None  # re-imports matter once sealed


def test_opentelemetry_suppression_opens_nothing():
    gate = Governance(strict=True)
    with suppress_instrumentation(), pytest.raises(SandboxEscape, match="203.0.113.7"):
        gate.audit("socket.connect", (object(), ("203.0.113.7", 443)))
