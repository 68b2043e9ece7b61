"""requests: captured where it sends, in urllib3; here only its span and its context.

opentelemetry-instrumentation-requests gives each call its standard CLIENT span (our urllib3
exchange enriches that span instead of nesting a second one). Around it, outermost, we make a
call from a thread the agent started without OpenTelemetry context still belong to the current
run.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from agenttrace._patches import Patches
from agenttrace.capture import mode as capture_mode

logger = logging.getLogger("agenttrace")


def patch(module: ModuleType, patches: Patches) -> None:
    _instrument(patches)
    session = module.sessions.Session
    patches.replace(session, "send", _send(session.send))


def _instrument(patches: Patches) -> None:
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
    except ImportError:
        if "opentelemetry.instrumentation.requests" in sys.modules:
            # That module is itself importing requests right now (opentelemetry-instrument loading
            # the stock instrumentor, which then instruments itself): nothing to do.
            return
        # a required dependency; without it requests calls get our own spans
        logger.warning("agenttrace: opentelemetry-instrumentation-requests is not installed")
        return
    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
        patches.on_undo(instrumentor.uninstrument)


def _send(original: Any) -> Any:

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        token = _attach_run_context()
        try:
            return original(self, request, **kwargs)
        finally:
            if token is not None:
                otel_context.detach(token)

    send.__name__ = original.__name__
    send.__qualname__ = original.__qualname__
    send.__doc__ = original.__doc__
    send.__wrapped__ = original  # type: ignore[attr-defined]
    if getattr(original, "opentelemetry_instrumentation_requests_applied", False):
        # RequestsInstrumentor().uninstrument() restores what it wrapped: let it find that
        # under us (taking this wrapper away with its own, as it would any outer patch).
        send.opentelemetry_instrumentation_requests_applied = True  # type: ignore[attr-defined]
        send.__wrapped__ = original.__wrapped__  # type: ignore[attr-defined]
    return send


def _attach_run_context() -> object | None:
    """With no span current (a bare thread), hang the call under the current run."""
    try:
        if trace.get_current_span().get_span_context().is_valid:
            return None
        mode = capture_mode.active()
        ctx = mode.parent_context() if mode is not None else None
        return otel_context.attach(ctx) if ctx is not None else None
    except Exception:
        logger.exception("agenttrace: could not attach the run context to a requests call")
        return None
