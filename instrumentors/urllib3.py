"""urllib3 (and so requests): ``HTTPConnectionPool.urlopen``, the call every request goes through.

Only the outermost ``urlopen`` is a call: its retries and in-pool redirects recurse inside the
exchange, where ``begin`` returns None. The body is teed at urllib3's raw reads (``_fp_read``,
``_handle_chunk``: still content-encoded, exactly as the caller pulls them), including a
``preload_content`` body read inside ``urlopen``; responses built during a call buffer what they
read until the one ``urlopen`` returns is adopted by the exchange. In replay the response is a
real ``urllib3.HTTPResponse`` over the http.client response the recording parses into, so
chunked reads, decoding and length checks behave as with a server.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from agenttrace._patches import Patches
from agenttrace.capture import Exchange, HttpCall, begin, internal_errors, rebuild_error
from agenttrace.capture.mode import when_intercepting
from agenttrace.capture.wire import replay_response, wire_error

from .http_client import capture_body

logger = logging.getLogger("agenttrace")

# True while our recorded urlopen runs: responses built then get a (buffering) tee.
_IN_URLOPEN: ContextVar[bool] = ContextVar("agenttrace_urllib3_urlopen", default=False)
_TEE = "_agenttrace_tee"


def patch(module: ModuleType, patches: Patches) -> None:
    response_class = module.response.HTTPResponse
    patches.replace(response_class, "__init__", _response_init(response_class.__init__))
    pool = module.connectionpool.HTTPConnectionPool
    patches.replace(pool, "urlopen", _urlopen(module, pool.urlopen))


# -- the body tee ---------------------------------------------------------------------------------


class _BodyTee:
    """Reports one urllib3 response's raw reads; buffers them until an exchange adopts it.

    Raw bytes come from ``_fp_read`` and ``_handle_chunk``; errors are seen as the caller sees
    them, at ``_error_catcher`` (urllib3's own exceptions); the body ends when the http.client
    response underneath closes, or on ``release_conn``/``close``. An end signalled inside the
    catcher (it releases the connection on the way out) waits for the catcher's outcome, so an
    error is never lost behind an early close.
    """

    def __init__(self, response: Any) -> None:
        self._response = response
        self._exchange: Exchange | None = None
        self._pending: list[bytes] = []
        self._error: BaseException | None = None
        self._ended = False
        self._catching = 0
        self._end_requested = False

    def install(self) -> None:
        response = self._response
        response.__dict__[_TEE] = self
        for name in ("_fp_read", "_handle_chunk"):
            if hasattr(response, name):
                setattr(response, name, self._source(getattr(response, name)))
        response._error_catcher = self._catcher(response._error_catcher)
        response.release_conn = self._ending(response.release_conn)
        response.close = self._ending(response.close)

    def adopt(self, exchange: Exchange) -> None:
        self._exchange = exchange
        for data in self._pending:
            exchange.chunk(data)
        self._pending = []
        if self._error is not None:
            exchange.fail(self._error)
        elif self._ended:
            exchange.close()

    # -- hooks --------------------------------------------------------------------------------

    def _source(self, original: Callable[..., bytes]) -> Callable[..., bytes]:
        def read(*args: Any, **kwargs: Any) -> bytes:
            data = original(*args, **kwargs)
            if data:
                if self._exchange is not None:
                    self._exchange.chunk(data)
                else:
                    self._pending.append(bytes(data))
            return data

        return read

    def _catcher(self, original: Callable[[], Any]) -> Callable[[], Any]:
        @contextmanager
        def error_catcher() -> Iterator[None]:
            self._catching += 1
            try:
                with original():
                    yield
            except GeneratorExit:
                raise
            except BaseException as exc:
                self._failed(exc)
                raise
            finally:
                self._catching -= 1
                if not self._catching and (self._end_requested or self._fp_closed()):
                    self._end()

        return error_catcher

    def _ending(self, original: Callable[[], Any]) -> Callable[[], Any]:
        def end() -> Any:
            try:
                return original()
            finally:
                if self._catching:
                    self._end_requested = True
                else:
                    self._end()

        return end

    # -- state ---------------------------------------------------------------------------------

    def _fp_closed(self) -> bool:
        fp = getattr(self._response, "_fp", None)
        if fp is None:
            return True
        try:
            return bool(fp.isclosed()) if hasattr(fp, "isclosed") else bool(fp.closed)
        except Exception:
            return False

    def _failed(self, exc: BaseException) -> None:
        if self._exchange is not None:
            self._exchange.fail(exc)
        elif self._error is None and not self._ended:
            self._error = exc

    def _end(self) -> None:
        if self._exchange is not None:
            self._exchange.close()
        else:
            self._ended = True


def _response_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _IN_URLOPEN.get():
            # Before the original __init__: with preload_content it reads the body right away.
            with internal_errors("tee a urllib3 response"):
                _BodyTee(self).install()
        original(self, *args, **kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __init__


def _adopt(exchange: Exchange, response: Any) -> None:
    try:
        exchange.response(
            response.status,
            list(response.headers.items()),
            reason=response.reason,
            http_version=_version(response),
        )
        tee = response.__dict__.get(_TEE)
        if tee is None:  # built outside our hook (a custom pool): tee what is left
            tee = _BodyTee(response)
            tee.install()
        tee.adopt(exchange)
    except Exception:
        logger.exception("agenttrace: could not record a urllib3 response")
        exchange.close()


def _version(response: Any) -> str | None:
    version = getattr(response, "version_string", None)
    if isinstance(version, str) and version.startswith("HTTP/1"):
        return version
    return {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(getattr(response, "version", None))


# -- urlopen ----------------------------------------------------------------------------------------


def _full_url(pool: Any, url: str) -> str:
    if not url.startswith("/"):
        return url  # absolute already (a plain HTTP proxy)
    host = pool.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(pool.scheme)
    netloc = host if pool.port in (None, default) else f"{host}:{pool.port}"
    return f"{pool.scheme}://{netloc}{url}"


def _prepare(pool: Any, arguments: dict[str, Any]) -> HttpCall:
    """The call in neutral form; a one-shot body is swapped for the same bytes (in place)."""
    data, arguments["body"] = capture_body(arguments.get("body"), "utf-8")
    headers = arguments.get("headers")
    if headers is None:
        headers = pool.headers
    return HttpCall(
        method=arguments["method"],
        url=_full_url(pool, arguments["url"]),
        headers=[(_text(k), _text(v)) for k, v in headers.items()],
        body=data,
        client="urllib3",
    )


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


class _Arguments:
    """``urlopen``'s arguments by name, bound without ``inspect.Signature.bind`` (which costs
    about as much as the rest of a capture). ``named`` is what the capture reads and may swap a
    one-shot body in; ``call`` hands everything back to urllib3."""

    def __init__(self, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]):
        if len(args) > len(names):
            raise TypeError("too many positional arguments")
        self.named: dict[str, Any] = dict(zip(names, args, strict=False))
        extra: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in self.named:
                raise TypeError(f"multiple values for {key!r}")
            if key in names:
                self.named[key] = value
            else:
                extra[key] = value
        if "method" not in self.named or "url" not in self.named:
            raise TypeError("method and url are required")
        self.named["response_kw"] = extra

    def call(self, original: Any, pool: Any) -> Any:
        named = {k: v for k, v in self.named.items() if k != "response_kw"}
        return original(pool, **named, **self.named["response_kw"])


def _urlopen(module: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    names = tuple(
        name
        for name, p in inspect.signature(original).parameters.items()
        if name != "self" and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    )

    # With nothing recording, the call goes untouched (a streamed upload stays streamed).
    @when_intercepting(original)
    def urlopen(self: Any, *args: Any, **kwargs: Any) -> Any:
        # A retry or redirect inside our call is part of it.
        if _IN_URLOPEN.get():
            return original(self, *args, **kwargs)
        try:
            bound = _Arguments(names, args, kwargs)
        except TypeError:  # the caller's own mistake: urllib3 says so
            return original(self, *args, **kwargs)
        try:
            call = _prepare(self, bound.named)
        except Exception:
            logger.exception("agenttrace: could not capture a urllib3 request")
            return bound.call(original, self)
        exchange = begin(call)
        if exchange is None:
            return bound.call(original, self)
        if exchange.answer is not None:
            return _replay(module, self, exchange, bound.named)
        token = _IN_URLOPEN.set(True)
        try:
            with exchange.sending():
                response = bound.call(original, self)
        finally:
            _IN_URLOPEN.reset(token)
        _adopt(exchange, response)
        return response

    return urlopen


# -- replay -------------------------------------------------------------------------------------------


def _replay(module: ModuleType, pool: Any, exchange: Exchange, arguments: dict[str, Any]) -> Any:
    answer = exchange.answer
    assert answer is not None
    fallback = module.exceptions.ProtocolError
    if not answer.has_response:
        exc = _with_pool(rebuild_error(answer.error or {}, fallback), pool)
        exchange.fail(exc)
        raise exc
    method, url = arguments["method"], arguments["url"]
    error = wire_error(answer, fallback)
    httplib_response = replay_response(answer, method, _with_pool(error, pool) if error else None)
    response_kw = arguments.get("response_kw") or {}
    token = _IN_URLOPEN.set(True)
    try:
        response = _new_response(
            module.response.HTTPResponse,
            body=httplib_response,
            headers=module.HTTPHeaderDict(httplib_response.msg.items()),
            status=httplib_response.status,
            version=httplib_response.version,
            version_string={10: "HTTP/1.0"}.get(httplib_response.version, "HTTP/1.1"),
            reason=httplib_response.reason,
            preload_content=arguments.get("preload_content", True),
            decode_content=arguments.get("decode_content", True),
            original_response=httplib_response,
            enforce_content_length=response_kw.get("enforce_content_length", True),
            request_method=method,
            request_url=url,
        )
    finally:
        _IN_URLOPEN.reset(token)
    response.retries = module.util.Retry.from_int(
        arguments.get("retries"), redirect=arguments.get("redirect", True), default=pool.retries
    )
    response._connection = None
    response._pool = pool
    _adopt(exchange, response)
    return response


def _new_response(response_class: type, **kwargs: Any) -> Any:
    accepted = _parameters(response_class)
    return response_class(**{k: v for k, v in kwargs.items() if k in accepted})


@functools.cache
def _parameters(response_class: type) -> frozenset[str]:
    """What this urllib3 version's HTTPResponse accepts (1.26 has no version_string)."""
    return frozenset(inspect.signature(response_class.__init__).parameters)


def _with_pool(exc: BaseException, pool: Any) -> BaseException:
    """A pool cannot be stored; the rebuilt error (and its reason) point at this one."""
    for error in (exc, getattr(exc, "reason", None)):
        # vars(), not getattr: NewConnectionError.pool is a property that warns
        if isinstance(error, BaseException) and vars(error).get("pool", 0) is None:
            try:
                error.pool = pool  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
    return exc
