"""The exceptions AgentTrace raises into user code."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has an invalid value; the message names key, value, source and the valid choices."""


class EventsFileError(ValueError):
    """The replay events (file or object) cannot be used; the message names the file and where it breaks."""


class GovernanceViolation(BaseException):
    """Replay left the recording or the sandbox.

    A ``BaseException`` on purpose: agent code and frameworks catch ``Exception`` and feed it
    back to the model or retry; a governance violation must stop the run. Every violation is also
    kept in a sticky record, so the process still exits non-zero if something swallowed it.
    """


class ReplayDivergence(GovernanceViolation):
    """The agent made a call that the recording does not contain (or not in that form)."""


class SandboxEscape(GovernanceViolation):
    """The agent reached for the real world during replay: DNS, sockets, subprocesses, entropy."""
