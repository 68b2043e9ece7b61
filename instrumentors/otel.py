"""``opentelemetry_instrumentor`` entry points: one ``BaseInstrumentor`` per library we capture.

``opentelemetry-instrument`` calls ``instrument()`` on each. Each patches its library now or when
it is first imported, through the same hooks ``agenttrace.init()`` installs, once per module
object, so both paths together (and stock OpenTelemetry instrumentors wrapping the same
methods) still capture a call once. Patching alone records nothing: calls are captured only
while an AgentTrace runtime runs (``agenttrace.distro`` starts it). Under
``opentelemetry-instrument`` the patching waits until every instrumentor is loaded, so that ours
wrap the stock ones as after ``agenttrace.init()``.

One library per instrumentor: a missing library disables only its own instrumentor, never the
others (auto-instrumentation checks the distribution's ``instruments`` extras, which agenttrace
deliberately does not declare, and each ``instrumentation_dependencies`` for manual use).
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor


class _LibraryInstrumentor(BaseInstrumentor):
    library = ""
    requirement: str | None = None  # None: part of the standard library

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,) if self.requirement else ()

    def _instrument(self, **kwargs: Any) -> None:
        from agenttrace.distro import defer_while_instrumenting

        # Inside opentelemetry-instrument, after the stock instrumentors (see agenttrace.distro).
        if not defer_while_instrumenting(self._patch):
            self._patch()

    def _patch(self) -> None:
        from . import TARGETS, _hook

        hook = _hook(TARGETS[self.library])
        module = sys.modules.get(self.library)
        if module is not None:
            hook(module)
        else:
            wrapt.register_post_import_hook(hook, self.library)

    def _uninstrument(self, **kwargs: Any) -> None:
        # The patches stay: replay and governance need every call intercepted while AgentTrace
        # runs, and with no runtime they pass calls straight through (agenttrace.shutdown()).
        pass


class HttpxInstrumentor(_LibraryInstrumentor):
    library = "httpx"
    requirement = "httpx >= 0.24"


class Httpx2Instrumentor(_LibraryInstrumentor):
    library = "httpx2"
    requirement = "httpx2 >= 2.0"


class RequestsInstrumentor(_LibraryInstrumentor):
    library = "requests"
    requirement = "requests >= 2.0"


class Urllib3Instrumentor(_LibraryInstrumentor):
    library = "urllib3"
    requirement = "urllib3 >= 1.26"


class HttpClientInstrumentor(_LibraryInstrumentor):
    library = "http.client"
