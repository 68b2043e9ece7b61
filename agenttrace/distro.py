"""``opentelemetry-instrument`` support: AgentTrace starts with no change to the agent's code.

``opentelemetry-instrument python agent.py`` runs, before the agent's first line: the selected
distro's ``configure`` → the selected configurator → ``opentelemetry_pre_instrument`` hooks →
every ``opentelemetry_instrumentor``. AgentTrace starts from the environment (``AGENTTRACE_*``,
``[tool.agenttrace]``) exactly as ``agenttrace.init()`` without arguments would: same recording,
same replay, same governance.

- ``AgentTraceDistro`` (``OTEL_PYTHON_DISTRO=agenttrace``) makes ``AgentTraceConfigurator`` the
  configurator unless ``OTEL_PYTHON_CONFIGURATOR`` names another.
- ``AgentTraceConfigurator`` (``OTEL_PYTHON_CONFIGURATOR=agenttrace``) does the OpenTelemetry
  SDK's standard set-up from ``OTEL_*`` variables (provider, resource, sampler, the exporters
  ``OTEL_TRACES_EXPORTER`` names, metrics, logs), then starts AgentTrace on that provider.
- ``auto_start`` is also a pre-instrument hook: when another distro's configurator ran instead,
  AgentTrace still starts and joins the provider it set up, so a replay never silently runs live.

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

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.environment_variables import (
    OTEL_PYTHON_CONFIGURATOR,
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
)
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_CONFIG_FILE
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector

logger = logging.getLogger("agenttrace")

NAME = "agenttrace"  # of every entry point, and what OTEL_PYTHON_* variables select us by
STARTED_BY = "opentelemetry-instrument"


class AgentTraceDistro(BaseDistro):
    """The ``opentelemetry_distro`` entry point ``agenttrace``."""

    def _configure(self, **kwargs: Any) -> None:
        # Choosing our distro means choosing our configurator, unless the user named another.
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, NAME)


class AgentTraceConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point ``agenttrace``: the SDK's standard set-up
    (subclassing it is the SDK's documented way for distros), then AgentTrace."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            super()._configure(**_with_service_name(kwargs))
        except Exception:
            # A bad OTEL_* variable must not keep AgentTrace (and a governed replay) from
            # starting: it then creates its own provider.
            logger.exception("agenttrace: the OpenTelemetry SDK set-up failed")
        auto_start()


def auto_start() -> None:
    """Start AgentTrace from the environment unless it runs already. Never raises: a
    configuration error is logged and the agent runs unrecorded, except when a replay was asked
    for, which exits with status 2 before the agent starts instead of running it live."""
    if _disabled():
        return
    from . import _api, _runtime

    if _runtime.current_runtime() is not None:
        return
    try:
        _api.init()
    except Exception as exc:
        _not_started(exc)
        return
    runtime = _runtime.current_runtime()
    if runtime is not None:
        runtime.started_by = STARTED_BY


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
    except Exception:  # reported by auto_start, which resolves the same settings
        return kwargs
    attributes = {SERVICE_NAME: name, **(kwargs.get("resource_attributes") or {})}
    return {**kwargs, "resource_attributes": attributes}
