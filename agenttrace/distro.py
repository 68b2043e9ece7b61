"""``opentelemetry-instrument`` support: AgentTrace starts with no change to the agent's code.

``opentelemetry-instrument python agent.py`` runs, before the agent's first line: the selected
distro's ``configure`` → the selected configurator → ``opentelemetry_pre_instrument`` hooks →
every ``opentelemetry_instrumentor`` → ``opentelemetry_post_instrument`` hooks. AgentTrace starts
in the last step, from the environment (``AGENTTRACE_*``, ``[tool.agenttrace]``) exactly as
``agenttrace.init()`` without arguments would: same recording, same replay, same governance.

Why last: an agent calls ``init()`` after its imports, when stock instrumentors (requests,
httpx) have already wrapped their libraries, so our patches sit outermost and a call made
outside any span still belongs to the run. Starting after the instrumentors reproduces that;
our own instrumentor entry points leave the patching to the session for the same reason.

- ``AgentTraceDistro`` (``OTEL_PYTHON_DISTRO=agenttrace``) makes ``AgentTraceConfigurator`` the
  configurator unless ``OTEL_PYTHON_CONFIGURATOR`` names another.
- ``AgentTraceConfigurator`` (``OTEL_PYTHON_CONFIGURATOR=agenttrace``) is the OpenTelemetry
  SDK's standard set-up from ``OTEL_*`` variables (provider, resource, sampler, the exporters
  ``OTEL_TRACES_EXPORTER`` names, metrics, logs); AgentTrace then joins that provider.
- The instrument hooks run whichever distro and configurator were selected: with another
  vendor's, AgentTrace joins the provider it set up, and a replay never silently runs live.

An ``agenttrace.init()`` in the agent's code then keeps this first configuration (a warning names
the arguments it ignored): the process was already recording, or replaying under governance,
before that line ran, and agent code must not be able to switch a replay sandbox off.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=agenttrace`` (or ``*``) keeps AgentTrace from starting.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.environment_variables import (
    OTEL_PYTHON_CONFIGURATOR,
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
)
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_CONFIG_FILE
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector
from opentelemetry.util._importlib_metadata import EntryPoint

logger = logging.getLogger("agenttrace")

NAME = "agenttrace"  # of every entry point, and what OTEL_PYTHON_* variables select us by
STARTED_BY = "opentelemetry-instrument"
_NOT_STARTED = (
    "AGENTTRACE_MODE=replay, before AgentTrace started: "
    "opentelemetry-instrument did not finish loading (see the errors above)"
)


class AgentTraceDistro(BaseDistro):
    """The ``opentelemetry_distro`` entry point ``agenttrace``."""

    def _configure(self, **kwargs: Any) -> None:
        # Choosing our distro means choosing our configurator, unless the user named another.
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, NAME)

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        try:
            super().load_instrumentor(entry_point, **kwargs)
        except (ImportError, DependencyConflictError):
            raise  # opentelemetry-instrument skips that one instrumentor and goes on
        except Exception:
            # Otherwise one broken instrumentor aborts the rest, AgentTrace's start included.
            logger.exception("agenttrace: instrumentor %s failed; skipped", entry_point.name)


class AgentTraceConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point ``agenttrace``: the SDK's standard set-up
    (subclassing it is the SDK's documented way for distros), with our service.name default."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            super()._configure(**_with_service_name(kwargs))
        except Exception:
            # A bad OTEL_* variable must not stop the rest: AgentTrace then creates its own
            # provider when it starts.
            logger.exception("agenttrace: the OpenTelemetry SDK set-up failed")


def before_instrumentors() -> None:
    """``opentelemetry_pre_instrument`` hook."""
    if _wants_replay() and not _disabled():
        # Should loading the instrumentors fail, AgentTrace would never start and the agent
        # would run live: until it starts, the network and subprocesses are refused.
        from .governance import hook

        hook.guard(_NOT_STARTED)


def after_instrumentors() -> None:
    """``opentelemetry_post_instrument`` hook: start AgentTrace."""
    auto_start()


def auto_start() -> None:
    """Start AgentTrace from the environment unless it runs already. Never raises: a
    configuration error is logged and the agent runs unrecorded, except when a replay was asked
    for, which exits with status 2 before the agent starts instead of running it live."""
    if _disabled():
        return
    from . import _api, _session
    from .governance import hook

    # From here on AgentTrace's own governance guards a replay, or the process exits.
    hook.unguard()
    if _session.current() is not None:
        return
    try:
        _api.init()
    except Exception as exc:
        _not_started(exc)
        return
    session = _session.current()
    if session is not None:
        session.started_by = STARTED_BY


def _disabled() -> bool:
    names = os.environ.get(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "")
    return bool({n.strip() for n in names.split(",")} & {NAME, "*"})


def _wants_replay() -> bool:
    return os.environ.get("AGENTTRACE_MODE", "").strip().lower() not in ("", "record")


def _not_started(exc: Exception) -> None:
    from .errors import ConfigError, EventsFileError

    if _wants_replay():
        # Running the agent live would leave the replay sandbox: real calls, real side effects.
        sys.stderr.write(
            f"agenttrace: cannot replay under opentelemetry-instrument: {exc}\n"
            "agenttrace: the agent was not started (exit status 2).\n"
        )
        sys.stderr.flush()
        os._exit(2)  # SystemExit inside sitecustomize is a fatal interpreter error
    expected = isinstance(exc, (ConfigError, EventsFileError))
    logger.error("agenttrace: not recording this run: %s", exc, exc_info=not expected)


def _with_service_name(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Our default service.name (the script name, as with init()) where the SDK would say
    ``unknown_service``; OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES still win."""
    if (
        os.environ.get(OTEL_CONFIG_FILE)
        or SERVICE_NAME in OTELResourceDetector().detect().attributes
    ):
        return kwargs
    try:
        from . import _config

        name = _config.resolve({}).service_name
    except Exception:  # reported when AgentTrace starts, which resolves the same settings
        return kwargs
    attributes = {SERVICE_NAME: name, **(kwargs.get("resource_attributes") or {})}
    return {**kwargs, "resource_attributes": attributes}
