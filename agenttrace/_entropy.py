"""Entropy and DNS as recorded I/O: captured in record mode, served from the recording in replay.

Python has no audit events for entropy, so the functions themselves are patched:
``os.urandom`` (also what ``uuid.uuid4`` looks up at call time), ``os.getrandom``,
``random._urandom`` (bound at import by ``SystemRandom``/``secrets``) and ``random.Random.seed``
(``Random()``/``random.seed()`` without an argument seed from the OS in C).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from . import _context

if TYPE_CHECKING:
    from ._runtime import Runtime

_ORIG_URANDOM = os.urandom
_ORIG_GETRANDOM = getattr(os, "getrandom", None)
_ORIG_RANDOM_URANDOM = random._urandom  # type: ignore[attr-defined]
_ORIG_SEED = random.Random.seed
_ORIG_GETADDRINFO = socket.getaddrinfo

_runtime: Runtime | None = None
_installed = False


def install(runtime: Runtime) -> None:
    """Route entropy and DNS through ``runtime`` (idempotent; the latest runtime wins)."""
    global _runtime, _installed
    _runtime = runtime
    if _installed:
        return
    _installed = True
    os.urandom = _wrap_bytes("os.urandom", _ORIG_URANDOM)
    random._urandom = _wrap_bytes("os.urandom", _ORIG_RANDOM_URANDOM)  # type: ignore[attr-defined]
    if _ORIG_GETRANDOM is not None:
        os.getrandom = _wrap_getrandom(_ORIG_GETRANDOM)
    random.Random.seed = _seed  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo


def uninstall() -> None:
    global _runtime, _installed
    _runtime = None
    if not _installed:
        return
    _installed = False
    os.urandom = _ORIG_URANDOM
    random._urandom = _ORIG_RANDOM_URANDOM  # type: ignore[attr-defined]
    if _ORIG_GETRANDOM is not None:
        os.getrandom = _ORIG_GETRANDOM
    random.Random.seed = _ORIG_SEED  # type: ignore[method-assign]
    socket.getaddrinfo = _ORIG_GETADDRINFO


def _ours() -> Runtime | None:
    """The runtime, unless this is our own (suppressed) work such as exporting spans."""
    rt = _runtime
    if rt is None or not rt.capturing or not is_instrumentation_enabled():
        return None
    return rt


def _wrap_bytes(source: str, original: Callable[[int], bytes]) -> Callable[[int], bytes]:
    def urandom(size: int, /) -> bytes:
        rt = _ours()
        if rt is None:
            return original(size)
        return rt.entropy_bytes(source, size, original)

    urandom.__wrapped__ = original  # type: ignore[attr-defined]
    urandom.__doc__ = original.__doc__
    return urandom


def _wrap_getrandom(original: Callable[..., bytes]) -> Callable[..., bytes]:
    def getrandom(size: int, flags: int = 0, /) -> bytes:
        rt = _ours()
        if rt is None:
            return original(size, flags)
        return rt.entropy_bytes("os.getrandom", size, lambda n: original(n, flags))

    getrandom.__wrapped__ = original  # type: ignore[attr-defined]
    return getrandom


def _seed(self: random.Random, a: Any = None, version: int = 2) -> None:
    if a is None and not isinstance(self, random.SystemRandom):
        rt = _ours()
        if rt is not None:
            a = rt.entropy_seed(lambda: int.from_bytes(_ORIG_URANDOM(32), "big"))
    _ORIG_SEED(self, a, version)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    rt = _ours()
    if rt is None or _context.in_call():
        return _ORIG_GETADDRINFO(host, port, *args, **kwargs)
    return rt.dns_lookup(host, port, lambda: _ORIG_GETADDRINFO(host, port, *args, **kwargs))


def current_flow() -> str:
    """Who is drawing: the flow (see ``_context``), and the asyncio task (``Task-N``, named in
    creation order) within it."""
    flow = _context.current_flow()
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    return f"{flow}|{task.get_name()}" if task is not None else flow


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dns_to_json(result: Any) -> list[list[Any]]:
    return [[int(f), int(t), int(p), c, list(addr)] for f, t, p, c, addr in result]


def dns_from_json(result: list[list[Any]]) -> list[tuple[Any, ...]]:
    return [
        (socket.AddressFamily(f), socket.SocketKind(t), p, c, tuple(addr))
        for f, t, p, c, addr in result
    ]
