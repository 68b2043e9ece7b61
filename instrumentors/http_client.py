"""http.client (and so urllib.request): the connection's ``request``/``getresponse`` pair.

``request()`` captures the call (when served, nothing is sent); ``getresponse()`` returns the
live response with its reads teed, or for a served call a *real* ``http.client.HTTPResponse``
parsed from the recording's wire bytes (``agenttrace.capture.wire``), so everything above it
(urllib.request, urllib3) behaves exactly as with a server.

Connections of urllib3 (a subclass) are captured by the urllib3 adapter: inside its exchange,
``begin`` returns None and these patches step aside.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agenttrace._patches import Patches
from agenttrace.capture import Exchange, HttpCall, begin, internal_errors, rebuild_error
from agenttrace.capture.mode import when_intercepting
from agenttrace.capture.wire import replay_response, wire_error

logger = logging.getLogger("agenttrace")

CLIENT = "http.client"
_EXCHANGE = "_agenttrace_exchange"  # set on a connection between request() and getresponse()


def patch(module: ModuleType, patches: Patches) -> None:
    connection = module.HTTPConnection
    patches.replace(connection, "request", _request(connection.request))
    patches.replace(connection, "getresponse", _getresponse(connection.getresponse))


# -- record: tee an HTTPResponse as the caller reads it ------------------------------------------


class _ResponseTee:
    """Reports the body bytes each outermost read hands the caller; completes at EOF/close.

    ``read(amt)`` calls ``self.readinto`` and ``readline`` calls ``peek``/``read``: only the
    outermost call is reported, so nothing is counted twice.
    """

    _READS = ("read", "read1", "readinto", "readline")

    def __init__(self, response: http.client.HTTPResponse, exchange: Exchange) -> None:
        self._response = response
        self._exchange = exchange
        self._depth = 0

    def install(self) -> None:
        response = self._response
        for name in self._READS:
            setattr(response, name, self._wrap_read(name, getattr(response, name)))
        original_close = response.close

        def close() -> None:
            try:
                original_close()
            finally:
                self._exchange.close()

        response.close = close  # type: ignore[method-assign]

    def _wrap_read(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def read(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                if self._depth == 1:
                    if isinstance(exc, http.client.IncompleteRead):
                        self._exchange.chunk(exc.partial)  # the caller gets these bytes too
                    self._exchange.fail(exc)
                raise
            finally:
                self._depth -= 1
            if self._depth == 0:
                self._report(name, args, result)
            return result

        return read

    def _report(self, name: str, args: tuple[Any, ...], result: Any) -> None:
        with internal_errors("record a response body read"):
            if name == "readinto":
                self._exchange.chunk(bytes(memoryview(args[0])[:result]) if result else b"")
            else:
                self._exchange.chunk(result)
            if self._response.isclosed():
                self._exchange.close()


def report_response(exchange: Exchange, response: http.client.HTTPResponse) -> None:
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(response.version)
    exchange.response(
        response.status, response.msg.items(), reason=response.reason, http_version=version
    )


# -- the connection -------------------------------------------------------------------------------


def _url(conn: http.client.HTTPConnection, selector: str) -> str:
    if selector.startswith(("http://", "https://")):
        return selector  # a plain HTTP proxy gets the absolute URL
    https = isinstance(conn, getattr(http.client, "HTTPSConnection", ()))
    host, port = conn.host, conn.port
    tunnel = getattr(conn, "_tunnel_host", None)
    if tunnel:  # CONNECT through a proxy: the call goes to the tunnelled host
        host, port, https = tunnel, getattr(conn, "_tunnel_port", None), True
    scheme = "https" if https else "http"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = 443 if https else 80
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{selector or '/'}"


def capture_body(body: Any, encoding: str = "iso-8859-1") -> tuple[bytes | None, Any]:
    """The body's bytes for the event, and what to hand the client (the same if possible).

    ``encoding`` is how the client encodes text (http.client: ISO-8859-1, urllib3: UTF-8).
    """
    if body is None:
        return None, body
    if isinstance(body, str):
        return body.encode(encoding), body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), body
    if hasattr(body, "read"):
        return _file_body(body, encoding)
    # An iterable is consumed once: hand the client the same bytes as one chunk.
    data = b"".join(_as_bytes(part, encoding) for part in body)
    return data, [data]


def _file_body(body: Any, encoding: str) -> tuple[bytes, Any]:
    try:
        position = body.tell() if body.seekable() else None
    except (OSError, AttributeError, ValueError):
        position = None
    data = _as_bytes(body.read(), encoding)
    if position is None:
        return data, [data]  # read once: the client gets the same bytes
    body.seek(position)  # the client sends the file itself, from where it was
    return data, body


def _as_bytes(data: Any, encoding: str) -> bytes:
    return data.encode(encoding) if isinstance(data, str) else bytes(data)


def _call(conn: Any, method: str, url: str, headers: Any, data: bytes | None) -> HttpCall:
    items = headers.items() if hasattr(headers, "items") else headers
    return HttpCall(
        method=method,
        url=_url(conn, url),
        headers=[(_text(k), _text(v)) for k, v in items],
        body=data,
        client=CLIENT,
    )


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _request(original: Callable[..., Any]) -> Callable[..., Any]:
    @when_intercepting(original)  # otherwise (or when urllib3 captures this call): untouched
    def request(
        self: Any, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        headers = {} if headers is None else headers
        self.__dict__.pop(_EXCHANGE, None)
        try:
            data, body = capture_body(body)
            call = _call(self, method, url, headers, data)
        except Exception:
            logger.exception("agenttrace: could not capture an http.client request")
            return original(self, method, url, body, headers, **kwargs)
        exchange = begin(call)
        if exchange is None:
            return original(self, method, url, body, headers, **kwargs)
        answer = exchange.answer
        if answer is not None:
            if not answer.has_response and (answer.error or {}).get("phase") == "request":
                exc = rebuild_error(answer.error, OSError)
                exchange.fail(exc, phase="request")
                raise exc
            self.__dict__[_EXCHANGE] = exchange  # getresponse() serves it
            return None
        with exchange.sending(phase="request"):
            result = original(self, method, url, body, headers, **kwargs)
        self.__dict__[_EXCHANGE] = exchange
        return result

    return request


def _getresponse(original: Callable[..., Any]) -> Callable[..., Any]:
    def getresponse(self: Any) -> Any:
        exchange = self.__dict__.pop(_EXCHANGE, None)
        if exchange is None:
            return original(self)
        if exchange.answer is not None:
            response = _served(exchange)
        else:
            with exchange.sending(phase="response"):
                response = original(self)
            _tee(exchange, response)
        return response

    getresponse.__wrapped__ = original  # type: ignore[attr-defined]
    return getresponse


def _served(exchange: Exchange) -> http.client.HTTPResponse:
    answer = exchange.answer
    assert answer is not None
    if not answer.has_response:
        exc = rebuild_error(answer.error or {}, OSError)
        exchange.fail(exc, phase="response")
        raise exc
    response = replay_response(answer, exchange.call.method, wire_error(answer, OSError))
    _tee(exchange, response)
    return response


def _tee(exchange: Exchange, response: http.client.HTTPResponse) -> None:
    try:
        report_response(exchange, response)
        _ResponseTee(response, exchange).install()
    except Exception:
        logger.exception("agenttrace: could not record an http.client response")
        exchange.close()
