"""Running a command under AgentTrace (``agenttrace run`` / ``agenttrace replay``).

The command needs no ``agenttrace.init()``: like ``opentelemetry-instrument``, the launcher puts
OpenTelemetry's auto-instrumentation ``sitecustomize`` on ``PYTHONPATH``, so every Python process
the command starts runs the ``agenttrace`` distro, configured by the ``AGENTTRACE_*`` variables set
here. An ``init()`` in the agent's code keeps that configuration.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Mapping, Sequence

_RANDOM = random.SystemRandom()  # the launcher's own choice, never the agent's stream


def _auto_instrumentation_dir() -> str:
    import opentelemetry.instrumentation.auto_instrumentation as auto

    return os.path.dirname(os.path.abspath(auto.__file__))


def started_env(base: Mapping[str, str], settings: Mapping[str, str]) -> dict[str, str]:
    """``base`` with AgentTrace starting in every Python process and ``settings`` applied."""
    env = dict(base)
    env.update(settings)
    directory = _auto_instrumentation_dir()
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != directory]
    if os.getcwd() not in paths:
        paths.insert(0, os.getcwd())
    env["PYTHONPATH"] = os.pathsep.join([directory, *paths])
    env.setdefault("OTEL_PYTHON_DISTRO", "agenttrace")
    env.setdefault("OTEL_PYTHON_CONFIGURATOR", "agenttrace")
    return env


def record_settings(base: Mapping[str, str]) -> dict[str, str]:
    """Record mode, with ``PYTHONHASHSEED`` fixed (and so recorded) when it is unset, so that the
    replay can iterate sets the same way."""
    settings = {"AGENTTRACE_MODE": "record"}
    if not base.get("PYTHONHASHSEED"):
        settings["PYTHONHASHSEED"] = str(_RANDOM.randrange(1, 2**32))
    return settings


def replay_settings(trace: str, level: str, hash_seed: str | None) -> dict[str, str]:
    settings = {
        "AGENTTRACE_MODE": "replay",
        "AGENTTRACE_GOVERNANCE_LEVEL": level,
        "AGENTTRACE_REPLAY_EVENTS_FILE": trace,
    }
    if hash_seed and hash_seed != "random":
        settings["PYTHONHASHSEED"] = hash_seed  # the recorded one: sets iterate as recorded
    return settings


def run(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``command``; its exit status as a shell reports it (128 + N for signal N)."""
    try:
        process = subprocess.Popen(list(command), env=dict(env))
    except FileNotFoundError:
        raise CommandNotFound(command[0]) from None
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)  # the child decides; we wait for it to finish
    return 128 - code if code < 0 else code


class CommandNotFound(OSError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name}: command not found")
