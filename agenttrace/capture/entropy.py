"""Entropy and DNS interception points: each draw or lookup goes to the active mode.

Python has no audit events for entropy, so the functions themselves are patched:
``os.urandom`` (also what ``uuid.uuid4`` looks up at call time), ``os.getrandom``,
``random._urandom`` (bound at import by ``SystemRandom``/``secrets``) and ``random.Random.seed``
(``Random()``/``random.seed()`` without an argument seed from the OS in C). DNS is
``socket.getaddrinfo`` outside an intercepted call (inside one, the client's own lookup is part
of the call). ``uuid.getnode`` (the node behind ``uuid1``; it may run ``ip link``) is a fact of
the recording machine. Recording and serving are the mode's business.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import uuid
from collections.abc import Callable
from typing import Any

from .. import _context
from .._patches import Patches
from . import mode as _mode

_ORIG_URANDOM = os.urandom
_ORIG_GETRANDOM = getattr(os, "getrandom", None)
_ORIG_RANDOM_URANDOM = random._urandom  # type: ignore[attr-defined]
_ORIG_SEED = random.Random.seed
_ORIG_GETADDRINFO = socket.getaddrinfo
_ORIG_GETNODE = uuid.getnode


def install(patches: Patches) -> None:
    """Route entropy and DNS through whichever mode is active."""
    patches.replace(os, "urandom", _wrap_bytes("os.urandom", _ORIG_URANDOM))
    patches.replace(random, "_urandom", _wrap_bytes("os.urandom", _ORIG_RANDOM_URANDOM))
    if _ORIG_GETRANDOM is not None:
        patches.replace(os, "getrandom", _wrap_getrandom(_ORIG_GETRANDOM))
    patches.replace(random.Random, "seed", _seed)
    patches.replace(socket, "getaddrinfo", _getaddrinfo)
    patches.replace(uuid, "getnode", _getnode)


def _replayed_mode() -> _mode.Mode | None:
    """The mode, for a draw the replay will make again: not a client's own draw inside an
    intercepted call (a websocket's frame masks), nor a tool body's (the body does not run)."""
    return None if _context.unreplayed() else _mode.active()


def _wrap_bytes(source: str, original: Callable[[int], bytes]) -> Callable[[int], bytes]:
    def urandom(size: int, /) -> bytes:
        mode = _replayed_mode()
        if mode is None:
            return original(size)
        return mode.entropy_bytes(source, size, original)

    urandom.__wrapped__ = original  # type: ignore[attr-defined]
    urandom.__doc__ = original.__doc__
    return urandom


def _wrap_getrandom(original: Callable[..., bytes]) -> Callable[..., bytes]:
    def getrandom(size: int, flags: int = 0, /) -> bytes:
        mode = _replayed_mode()
        if mode is None:
            return original(size, flags)
        return mode.entropy_bytes("os.getrandom", size, lambda n: original(n, flags))

    getrandom.__wrapped__ = original  # type: ignore[attr-defined]
    return getrandom


def _seed(self: random.Random, a: Any = None, version: int = 2) -> None:
    if a is None and not isinstance(self, random.SystemRandom):
        mode = _replayed_mode()
        if mode is not None:
            a = mode.entropy_seed(lambda: int.from_bytes(_ORIG_URANDOM(32), "big"))
    _ORIG_SEED(self, a, version)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    mode = _mode.active() if not _context.in_call() else None
    if mode is None:
        return _ORIG_GETADDRINFO(host, port, *args, **kwargs)
    host_s = host.decode() if isinstance(host, bytes) else str(host)
    return mode.dns_lookup(host_s, port, lambda: _ORIG_GETADDRINFO(host, port, *args, **kwargs))


def _getnode() -> int:
    mode = _mode.active()
    if mode is None:
        return _ORIG_GETNODE()
    return mode.uuid_node(_ORIG_GETNODE)


def current_flow() -> str:
    """Who is drawing or reading the clock: the flow (thread, job or task; see ``_context``)."""
    return _context.current_flow()


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dns_to_json(result: Any) -> list[list[Any]]:
    return [[int(f), int(t), int(p), c, list(addr)] for f, t, p, c, addr in result]


def dns_from_json(result: list[list[Any]]) -> list[tuple[Any, ...]]:
    return [
        (socket.AddressFamily(f), socket.SocketKind(t), p, c, tuple(addr))
        for f, t, p, c, addr in result
    ]
