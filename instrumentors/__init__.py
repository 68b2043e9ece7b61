"""One module per I/O source. Each turns its client's calls into ``agenttrace._exchange`` calls.

Instrumentors patch a library when it is imported (now, or later via a post-import hook), once
per module object, so ``httpx2.alias_httpx()`` (where ``httpx`` *is* ``httpx2``) is patched once.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from types import ModuleType

import wrapt

logger = logging.getLogger("agenttrace")

# library module -> (our instrumentor module, its patch function name)
TARGETS: dict[str, str] = {
    "httpx": "agenttrace.instrumentors.httpx",
    "httpx2": "agenttrace.instrumentors.httpx",
    "urllib3": "agenttrace.instrumentors.urllib3",
    "requests": "agenttrace.instrumentors.requests",
    "http.client": "agenttrace.instrumentors.http_client",
}

_registered = False


def instrument_all() -> None:
    """Patch every supported library now or when it is first imported (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    for library, implementation in TARGETS.items():
        hook = _hook(implementation)
        if library in sys.modules:
            hook(sys.modules[library])
        else:
            wrapt.register_post_import_hook(hook, library)


def _hook(implementation: str) -> Callable[[ModuleType], None]:
    def patch(module: ModuleType) -> None:
        try:
            importlib.import_module(implementation).patch(module)
        except Exception:  # a library version we do not understand must not break the agent
            logger.exception("agenttrace: could not instrument %s", module.__name__)

    return patch


def already_patched(module: ModuleType, marker: str = "_agenttrace_patched") -> bool:
    """True if this module object was patched before; marks it otherwise."""
    if getattr(module, marker, False):
        return True
    setattr(module, marker, True)
    return False
