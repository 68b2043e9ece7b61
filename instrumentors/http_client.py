"""http.client (and so urllib.request): the connection's ``request``/``getresponse`` pair.

``request()`` captures the call (in replay nothing is sent); ``getresponse()`` returns the live
response with its reads teed, or in replay a *real* ``http.client.HTTPResponse`` parsed from
wire bytes synthesised from the recording, so everything above it (urllib.request, urllib3)
behaves exactly as with a server. The wire synthesis and the error (de)serialisation here are
shared with the urllib3 adapter, which sits on top of http.client.

Connections of urllib3 (a subclass) are captured by the urllib3 adapter: inside its exchange,
``begin`` returns None and these patches step aside.
"""

from __future__ import annotations

import http.client
import io
import logging
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from agenttrace._exchange import Answer, Exchange, HttpCall, begin, intercepting

from . import already_patched

logger = logging.getLogger("agenttrace")

CLIENT = "http.client"
_EXCHANGE = "_agenttrace_exchange"  # set on a connection between request() and getresponse()
_SCALARS = (str, int, float, bool, type(None))


def patch(module: ModuleType) -> None:
    if already_patched(module):
        return
    _patch_request(module.HTTPConnection)
    _patch_getresponse(module.HTTPConnection)


# -- errors: what to store so replay raises the same exception --------------------------------


def describe_error(exc: BaseException, _depth: int = 0) -> dict[str, Any]:
    """Details to rebuild ``exc``: its args, attributes and cause (nested exceptions included).

    Generic on purpose: urllib3's ``MaxRetryError.reason`` (which requests turns into
    ``ConnectionError`` or ``ConnectTimeout``), an ``OSError``'s errno, a URL attribute, the
    socket error under a ``ProtocolError``. Objects that cannot be stored (a pool, a
    connection) come back as None.
    """
    details: dict[str, Any] = {}
    if _depth > 4:
        return details
    if exc.__cause__ is not None:
        details["cause"] = _error_dict(exc.__cause__, _depth + 1)
    if all(isinstance(a, _SCALARS) for a in exc.args):
        details["args"] = list(exc.args)
    attrs: dict[str, Any] = {}
    for name, value in vars(exc).items():
        if name.startswith("__"):  # __notes__ and the like: Python's, not the client's
            continue
        if isinstance(value, BaseException):
            attrs[name] = {"error": _error_dict(value, _depth + 1)}
        elif isinstance(value, _SCALARS):
            attrs[name] = value
        elif isinstance(value, (bytes, bytearray)):
            attrs[name] = {"bytes": len(value)}  # the content is the body's, stored redacted
        else:
            attrs[name] = None
    if attrs:
        details["attrs"] = attrs
    return details


def _error_dict(exc: BaseException, depth: int) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        **describe_error(exc, depth),
    }


def rebuild_error(error: dict[str, Any], fallback: type[BaseException]) -> BaseException:
    """The exception a recorded error stands for (``fallback`` if its class is gone)."""
    cls = _error_class(error, fallback)
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
    for name, value in (error.get("attrs") or {}).items():
        try:
            setattr(exc, name, _attr_value(value, fallback))
        except (AttributeError, TypeError):
            pass  # a read-only property
    return exc


def _attr_value(value: Any, fallback: type[BaseException]) -> Any:
    if isinstance(value, dict) and "error" in value:
        return rebuild_error(value["error"], fallback)
    if isinstance(value, dict) and "bytes" in value:
        return b""
    return value


def _error_class(error: dict[str, Any], fallback: type[BaseException]) -> type[BaseException]:
    # Only modules already loaded (the client's own): a recording never makes us import code.
    module = sys.modules.get(error.get("module") or "builtins")
    cls = getattr(module, str(error.get("type")), None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else fallback


# -- replay: a real HTTPResponse over synthesised wire bytes -----------------------------------


class _ReplayRaw(io.RawIOBase):
    """The socket's byte stream: the recorded wire pieces, then EOF or the recorded error."""

    def __init__(self, pieces: Iterator[bytes], error: BaseException | None) -> None:
        self._pieces = pieces
        self._current = memoryview(b"")
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            piece = next(self._pieces, None)
            if piece is None:
                if self._error is not None:
                    raise self._error
                return 0
            self._current = memoryview(piece)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


class _ReplaySocket:
    """Just enough of a socket for ``http.client.HTTPResponse``: ``makefile``."""

    def __init__(self, raw: _ReplayRaw) -> None:
        self._raw = raw

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._raw)

    def close(self) -> None:
        pass


def replay_response(
    answer: Answer, method: str, error: BaseException | None = None, url: str | None = None
) -> http.client.HTTPResponse:
    """Parse the recorded answer as a server's reply: status line, headers, framed body."""
    raw = _ReplayRaw(_wire(answer), error)
    response = http.client.HTTPResponse(_ReplaySocket(raw), method=method, url=url)  # type: ignore[arg-type]
    response.begin()
    return response


def _wire(answer: Answer) -> Iterator[bytes]:
    version = answer.http_version if answer.http_version in ("HTTP/1.0", "HTTP/1.1") else "HTTP/1.1"
    head = [f"{version} {answer.status} {answer.reason}".rstrip() + "\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in answer.headers]
    yield ("".join(head) + "\r\n").encode("latin-1", "replace")  # http.client reads latin-1
    chunked = any(
        name.lower() == "transfer-encoding" and value.strip().lower() == "chunked"
        for name, value in answer.headers
    )
    for data in answer.chunks():
        yield b"%x\r\n%s\r\n" % (len(data), data) if chunked else data
    if chunked and answer.error is None:
        yield b"0\r\n\r\n"


def wire_error(answer: Answer, fallback: type[BaseException]) -> BaseException | None:
    """What the replayed socket raises after the recorded body (None: a plain EOF).

    When the root cause is what the socket did, it is raised there so the client wraps it as
    it did live: a timeout or reset (urllib3: ``ReadTimeoutError``, ``ProtocolError``); a body
    cut short was an EOF, after which the client raises ``IncompleteRead`` itself, with its
    data. Anything else (a decoding error) is raised as recorded.
    """
    if answer.error is None:
        return None
    root = answer.error
    while root.get("cause"):
        root = root["cause"]
    cause = rebuild_error(root, fallback)
    if isinstance(cause, http.client.IncompleteRead):
        return None
    if isinstance(cause, OSError):
        return cause
    return rebuild_error(answer.error, fallback)


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
                    self._exchange.fail(exc, details=describe_error)
                raise
            finally:
                self._depth -= 1
            if self._depth == 0:
                self._report(name, args, result)
            return result

        return read

    def _report(self, name: str, args: tuple[Any, ...], result: Any) -> None:
        try:
            if name == "readinto":
                self._exchange.chunk(bytes(memoryview(args[0])[:result]) if result else b"")
            else:
                self._exchange.chunk(result)
            if self._response.isclosed():
                self._exchange.close()
        except Exception:
            logger.exception("agenttrace: could not record a response body read")


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


def _phase(name: str) -> Callable[[BaseException], dict[str, Any]]:
    """Error details that also say which call raised it, so replay raises it there too."""
    return lambda exc: {"phase": name, **describe_error(exc)}


def _patch_request(connection: type) -> None:
    original = connection.request

    def request(
        self: Any, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        headers = {} if headers is None else headers
        self.__dict__.pop(_EXCHANGE, None)
        if not intercepting():  # nothing records (or urllib3 captures this call): untouched
            return original(self, method, url, body, headers, **kwargs)
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
                exchange.fail(exc, details=_phase("request"))
                raise exc
            self.__dict__[_EXCHANGE] = exchange  # getresponse() serves it
            return None
        with exchange.sending(details=_phase("request")):
            result = original(self, method, url, body, headers, **kwargs)
        self.__dict__[_EXCHANGE] = exchange
        return result

    request.__wrapped__ = original  # type: ignore[attr-defined]
    connection.request = request


def _patch_getresponse(connection: type) -> None:
    original = connection.getresponse

    def getresponse(self: Any) -> Any:
        exchange = self.__dict__.pop(_EXCHANGE, None)
        if exchange is None:
            return original(self)
        if exchange.answer is not None:
            response = _replayed(exchange)
        else:
            with exchange.sending(details=_phase("response")):
                response = original(self)
            _tee(exchange, response)
        return response

    getresponse.__wrapped__ = original  # type: ignore[attr-defined]
    connection.getresponse = getresponse


def _replayed(exchange: Exchange) -> http.client.HTTPResponse:
    answer = exchange.answer
    assert answer is not None
    if not answer.has_response:
        exc = rebuild_error(answer.error or {}, OSError)
        exchange.fail(exc, details=_phase("response"))
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
