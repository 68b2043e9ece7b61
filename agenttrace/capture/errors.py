"""The error codec: what to store of an exception so replay raises the same one.

One codec for every client. A recorded error is ``{type, module, message}`` plus what is needed
to rebuild it: its args, its attributes, its cause (nested exceptions included). Generic on
purpose: urllib3's ``MaxRetryError.reason`` (which requests turns into ``ConnectionError`` or
``ConnectTimeout``), an ``OSError``'s errno, a URL attribute, the socket error under a
``ProtocolError``, httpx's request. Objects that cannot be stored (a pool, a connection, a
request) come back as None, or as what the client hands :func:`rebuild_error` in ``overrides``.
Never pickle: loading a trace must never run code, so only classes of modules already imported
(the client's own) are looked up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("agenttrace")

_SCALARS = (str, int, float, bool, type(None))
_MAX_DEPTH = 4


def error_record(exc: BaseException) -> dict[str, Any]:
    """``exc`` as stored in an event: type, module, message and the details to rebuild it."""
    return _record(exc, 0)


def _record(exc: BaseException, depth: int) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        **_details(exc, depth),
    }


def _details(exc: BaseException, depth: int) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if depth > _MAX_DEPTH:
        return details
    if exc.__cause__ is not None:
        details["cause"] = _record(exc.__cause__, depth + 1)
    if all(isinstance(a, _SCALARS) for a in exc.args):
        details["args"] = list(exc.args)
    attrs: dict[str, Any] = {}
    for name, value in vars(exc).items():
        if name.startswith("__"):  # __notes__ and the like: Python's, not the client's
            continue
        if isinstance(value, BaseException):
            attrs[name] = {"error": _record(value, depth + 1)}
        elif isinstance(value, _SCALARS):
            attrs[name] = value
        elif isinstance(value, (bytes, bytearray)):
            attrs[name] = {"bytes": len(value)}  # the content is the body's, stored redacted
        else:
            attrs[name] = None
    if attrs:
        details["attrs"] = attrs
    return details


def rebuild_error(
    error: Mapping[str, Any],
    fallback: type[BaseException],
    overrides: Mapping[str, Any] | None = None,
) -> BaseException:
    """The exception a recorded error stands for (``fallback`` if its class is gone).

    ``overrides`` sets attributes the recording could not hold (httpx's ``_request``).
    """
    cls = error_class(error, fallback)
    args = tuple(error.get("args") or (error.get("message", ""),))
    # __init__ signatures differ per class (a pool, a connection...); build it as unpickling
    # does, from args and attributes.
    try:
        exc = cls.__new__(cls, *args)
        if isinstance(exc, OSError):
            OSError.__init__(exc, *args)  # errno/strerror for OSError subclasses with an __init__
        exc.args = args
    except Exception:
        logger.exception("agenttrace: could not rebuild %s", error.get("type"))
        return fallback(error.get("message", ""))
    attrs = dict(error.get("attrs") or {})
    attrs.update(overrides or {})
    for name, value in attrs.items():
        try:
            setattr(exc, name, _attr_value(value, fallback))
        except (AttributeError, TypeError):
            pass  # a read-only property
    return exc


def root_cause(error: Mapping[str, Any]) -> Mapping[str, Any]:
    """The innermost recorded cause (the error itself when it has none)."""
    while error.get("cause"):
        error = error["cause"]
    return error


def _attr_value(value: Any, fallback: type[BaseException]) -> Any:
    if isinstance(value, dict) and "error" in value:
        return rebuild_error(value["error"], fallback)
    if isinstance(value, dict) and "bytes" in value:
        return b""
    return value


def error_class(error: Mapping[str, Any], fallback: type[BaseException]) -> type[BaseException]:
    # Only modules already loaded (the client's own): a recording never makes us import code.
    module = sys.modules.get(error.get("module") or "builtins")
    cls = getattr(module, str(error.get("type")), None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else fallback
