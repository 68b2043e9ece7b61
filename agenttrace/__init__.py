"""AgentTrace: record every I/O of an agent run, replay it offline, and govern the replay.

import agenttrace
agenttrace.init()                      # configuration from AGENTTRACE_* / pyproject.toml

@agenttrace.run(name="checkout_agent")
def main():
    with agenttrace.step("Planning", type="thought", input={"goal": "..."}):
        agenttrace.set_result({"plan": [...]})

@agenttrace.tool                       # a function boundary: recorded, and served in replay
def lookup_order(order_id: str) -> dict: ...
"""

from ._api import get_settings, init, run, set_result, shutdown, step
from ._config import Settings
from ._tool import tool
from ._version import VERSION as __version__  # noqa: F401 (the package version)
from .errors import (
    ConfigError,
    EventsFileError,
    GovernanceViolation,
    ReplayDivergence,
    SandboxEscape,
)

__all__ = [
    "init",
    "get_settings",
    "shutdown",
    "run",
    "step",
    "set_result",
    "tool",
    "Settings",
    "ConfigError",
    "EventsFileError",
    "GovernanceViolation",
    "ReplayDivergence",
    "SandboxEscape",
]
