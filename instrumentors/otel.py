"""``opentelemetry_instrumentor`` entry points: one ``BaseInstrumentor`` per library we capture.

``opentelemetry-instrument`` calls ``instrument()`` on each. The patching itself belongs to the
AgentTrace session, which ``agenttrace.distro`` starts once every instrumentor is loaded: its
patches then wrap the stock ones as after ``agenttrace.init()``, are applied once per module
object, and are undone when the session stops. These entry points make each library visible to
``opentelemetry-instrument`` and its dependency checks; instrumenting alone records nothing.

One library per instrumentor: a missing library disables only its own instrumentor, never the
others (auto-instrumentation checks the distribution's ``instruments`` extras, which agenttrace
deliberately does not declare, and each ``instrumentation_dependencies`` for manual use).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor


class _LibraryInstrumentor(BaseInstrumentor):
    library = ""
    requirement: str | None = None  # None: part of the standard library

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,) if self.requirement else ()

    def _instrument(self, **kwargs: Any) -> None:
        pass  # the session patches the library when it starts (see the module docstring)

    def _uninstrument(self, **kwargs: Any) -> None:
        # Replay and governance need every call intercepted while AgentTrace runs; the session
        # undoes its patches when it stops (agenttrace.shutdown()).
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


class AiohttpInstrumentor(_LibraryInstrumentor):
    library = "aiohttp"
    requirement = "aiohttp >= 3.12"


class WebsocketsInstrumentor(_LibraryInstrumentor):
    library = "websockets"
    requirement = "websockets >= 13"


class McpInstrumentor(_LibraryInstrumentor):
    library = "mcp"
    requirement = "mcp >= 1.9"
