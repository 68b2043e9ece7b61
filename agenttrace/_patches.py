"""Every patch AgentTrace applies, with its undo, in one place.

A session owns one :class:`Patches`. Instrumentors, the entropy and clock interception points,
thread propagation, exit tracking and the sandbox's machine probes all patch through it, so
stopping the session puts the process back exactly as it found it (vcrpy's one good idea: a
single patch builder that applies and removes everything).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("agenttrace")

_MISSING = object()


class Patches:
    """Patches applied for one session, undone in reverse order by :meth:`undo`."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._seen: set[Any] = set()
        self.closed = False

    def first(self, key: Any) -> bool:
        """True the first time ``key`` is asked about in this session (patch a thing once)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def replace(self, owner: Any, name: str, replacement: Any) -> Any:
        """Set ``owner.name`` to ``replacement``; returns the value it replaces.

        The undo restores what ``owner`` itself held (or removes the attribute when it was
        inherited), and only while our replacement is still in place: a wrapper someone put
        over ours afterwards (an OpenTelemetry instrumentor) keeps working, and ours under it
        passes calls straight through once no session runs.
        """
        current = getattr(owner, name)
        own = vars(owner).get(name, _MISSING)
        setattr(owner, name, replacement)

        def undo() -> None:
            if getattr(owner, name, None) is not replacement:
                logger.debug("agenttrace: %r.%s was patched over; left in place", owner, name)
                return
            if own is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, own)

        self._undo.append(undo)
        return current

    def on_undo(self, action: Callable[[], None]) -> None:
        """Run ``action`` when the patches are undone (in reverse order with the rest)."""
        self._undo.append(action)

    def undo(self) -> None:
        self.closed = True
        while self._undo:
            action = self._undo.pop()
            try:
                action()
            except Exception:
                logger.exception("agenttrace: could not undo a patch")

    def __len__(self) -> int:
        return len(self._undo)
