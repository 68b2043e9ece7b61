"""One module per I/O source, each a translator between its client and ``agenttrace.capture``.

A session patches every supported library when it starts (now, or when the library is first
imported), through its :class:`~agenttrace._patches.Patches`, once per module object — so
``httpx2.alias_httpx()`` (where ``httpx`` *is* ``httpx2``) is patched once — and stopping the
session undoes it all. To add a client: a module here with ``patch(module, patches)`` that turns
the client's request into an ``HttpCall``, and an entry in ``TARGETS``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from types import ModuleType

import wrapt

from agenttrace._patches import Patches

__all__ = ["TARGETS", "instrument"]

logger = logging.getLogger("agenttrace")

# library module -> our instrumentor module (it has ``patch(module, patches)``)
TARGETS: dict[str, str] = {
    "httpx": "agenttrace.instrumentors.httpx",
    "httpx2": "agenttrace.instrumentors.httpx",
    "urllib3": "agenttrace.instrumentors.urllib3",
    "requests": "agenttrace.instrumentors.requests",
    "http.client": "agenttrace.instrumentors.http_client",
    "aiohttp": "agenttrace.instrumentors.aiohttp",
    "websockets": "agenttrace.instrumentors.websockets",
    "mcp": "agenttrace.instrumentors.mcp",
}

# A library not imported yet: the session waiting to patch it when it is. The import hook is
# registered once per process (wrapt's hooks cannot be removed) and patches for whichever
# session is waiting then.
_waiting: dict[str, Patches] = {}
_hooked: set[str] = set()


def instrument(patches: Patches) -> None:
    """Patch every supported library now, or when it is first imported, into ``patches``."""
    for library in TARGETS:
        module = sys.modules.get(library)
        if module is not None:
            _patch(library, module, patches)
            continue
        _waiting[library] = patches
        if library not in _hooked:
            _hooked.add(library)
            wrapt.register_post_import_hook(functools.partial(_imported, library), library)


def _imported(library: str, module: ModuleType) -> None:
    patches = _waiting.pop(library, None)
    if patches is not None and not patches.closed:
        _patch(library, module, patches)


def _patch(library: str, module: ModuleType, patches: Patches) -> None:
    if not patches.first(("module", id(module))):
        return  # the same module object under two names (httpx2.alias_httpx())
    try:
        importlib.import_module(TARGETS[library]).patch(module, patches)
    except Exception:  # a library version we do not understand must not break the agent
        logger.exception("agenttrace: could not instrument %s", module.__name__)
