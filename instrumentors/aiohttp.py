"""aiohttp's ``ClientSession``: a client middleware, aiohttp's public hook (3.12+).

Every session gets our middleware appended to its own (``ClientSession(middlewares=...)``, by
patching ``__init__`` to pass it): innermost, so it sees each request as sent — every redirect hop
and retry — after the app's own middlewares. We chose the public middleware API over
``ClientSession._request`` (vcrpy's patch point, a private method with ~40 parameters that breaks
on aiohttp releases). What this leaves uncovered: sessions created before AgentTrace started, and
requests that pass their own ``middlewares=`` (which replace the session's).

Record: the real handler runs inside the exchange; the response's body reader is replaced by one
that pulls from aiohttp's own reader only when the caller reads, reporting each piece — nothing
is read ahead of the caller. Replay: a real ``ClientResponse``, started by aiohttp's own ``start``
from the recorded status line and headers, whose reader hands out one recorded chunk each time
the caller waits for data (``iter_any``, ``iter_chunked``, ``readline``, ``read`` and SSE parsers
see the chunks as recorded), then EOF or the recorded error. An httpx client over an aiohttp
transport is captured by the httpx adapter: inside its exchange this middleware steps aside.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import ModuleType, SimpleNamespace
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy  # aiohttp's own header types

from agenttrace._patches import Patches
from agenttrace.capture import Exchange, HttpCall, begin, intercepting, rebuild_error

logger = logging.getLogger("agenttrace")

CLIENT = "aiohttp"


def patch(module: ModuleType, patches: Patches) -> None:
    if not hasattr(module, "client_middlewares"):
        logger.warning(
            "agenttrace: aiohttp %s has no client middlewares (3.12+); its calls are not captured",
            getattr(module, "__version__", "?"),
        )
        return
    reader_class = _pull_reader(module)
    middleware = _middleware(module, reader_class)
    session = module.ClientSession
    patches.replace(session, "__init__", _init(session.__init__, middleware))


def _init(original: Callable[..., None], middleware: Any) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["middlewares"] = (*(kwargs.get("middlewares") or ()), middleware)
        original(self, *args, **kwargs)

    return __init__


# -- the body reader ---------------------------------------------------------------------------


class _NoFlowControl:
    """What a reader of ours tells its protocol: nothing (the source reader does flow control)."""

    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def _pull_reader(module: ModuleType) -> type:
    class PullReader(module.StreamReader):
        """A ``StreamReader`` that fetches the next piece only when its caller waits for data."""

        __slots__ = ("_pull", "_abandoned")

        def __init__(
            self,
            pull: Callable[[], Awaitable[bytes]],
            abandoned: Callable[[], None],
            loop: asyncio.AbstractEventLoop,
        ) -> None:
            super().__init__(_NoFlowControl(), 2**16, loop=loop)  # type: ignore[arg-type]
            self._pull = pull
            self._abandoned = abandoned

        async def _wait(self, func_name: str) -> None:
            try:
                data = await self._pull()
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    super().set_exception(exc)
                raise
            if data:
                self.feed_data(data)
            else:
                self.feed_eof()

        def set_exception(self, exc: BaseException, exc_cause: Any = None) -> None:
            # aiohttp's release()/close() of a response not read to its end
            self._abandoned()
            if exc_cause is None:
                super().set_exception(exc)
            else:
                super().set_exception(exc, exc_cause)

    return PullReader


def _tee(reader_class: type, source: Any, exchange: Exchange) -> Any:
    async def pull() -> bytes:
        try:
            data = await source.readany()
        except BaseException as exc:
            exchange.fail(exc)
            raise
        if data:
            exchange.chunk(data)
        else:
            exchange.close()
        return data

    return reader_class(pull, exchange.close, asyncio.get_running_loop())


# -- the middleware ------------------------------------------------------------------------------


def _middleware(module: ModuleType, reader_class: type) -> Any:
    async def agenttrace_middleware(request: Any, handler: Any) -> Any:
        if not intercepting() or "Upgrade" in request.headers:
            # ws_connect's upgrade: the connection becomes a websocket, not a body to tee
            return await handler(request)
        try:
            call = await _call(request)
        except Exception:
            logger.exception("agenttrace: could not capture an aiohttp request")
            return await handler(request)
        exchange = begin(call)
        if exchange is None:
            return await handler(request)
        if exchange.answer is not None:
            return await _served(module, reader_class, request, exchange)
        with exchange.sending():
            response = await handler(request)
        version = response.version
        exchange.response(
            response.status,
            response.raw_headers,
            reason=response.reason,
            http_version=f"HTTP/{version.major}.{version.minor}" if version else None,
            decoded=_decompresses(request),
        )
        response.content = _tee(reader_class, response.content, exchange)
        return response

    return agenttrace_middleware


async def _call(request: Any) -> HttpCall:
    body = request.body
    # 3.12+ payloads give their bytes without being consumed (a file is re-read, an async
    # iterable is cached for the real send)
    data = await body.as_bytes() if hasattr(body, "as_bytes") else bytes(body or b"")
    return HttpCall(
        method=request.method,
        url=str(request.url),
        headers=[(str(k), str(v)) for k, v in request.headers.items()],
        body=data,
        client=CLIENT,
    )


def _decompresses(request: Any) -> bool:
    session = getattr(request, "_session", None)
    return bool(getattr(session, "auto_decompress", True))


# -- replay --------------------------------------------------------------------------------------


async def _served(module: ModuleType, reader_class: type, request: Any, exchange: Exchange) -> Any:
    answer = exchange.answer
    assert answer is not None
    if not answer.has_response:
        exc = _error(module, answer.error or {}, request)
        exchange.fail(exc)
        raise exc
    pieces = iter(answer.decoded_chunks())

    async def pull() -> bytes:
        data = next(pieces, b"")
        if data:
            return data
        if answer.error is not None:
            exc = _error(module, answer.error, request)
            exchange.fail(exc)
            raise exc
        exchange.close()
        return b""

    reader = reader_class(pull, exchange.close, request.loop)
    response = _new_response(
        request.response_class,
        request.method,
        request.original_url,
        writer=None,
        continue100=None,
        timer=None,
        request_info=request.request_info,
        traces=[],
        loop=request.loop,
        session=getattr(request, "_session", None),
        stream_writer=SimpleNamespace(output_size=0),
    )
    headers = [(k, v) for k, v in answer.headers]
    major, _, minor = answer.http_version.removeprefix("HTTP/").partition(".")
    message = SimpleNamespace(
        version=module.HttpVersion(int(major or 1), int(minor or 1)),
        code=answer.status,
        reason=answer.reason,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        raw_headers=tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
    )
    await response.start(_ServedConnection(message, reader))
    exchange.response(answer.status, headers)
    return response


class _ServedConnection:
    """What ``ClientResponse.start`` reads a response from: the recorded one."""

    def __init__(self, message: Any, payload: Any) -> None:
        self.protocol = SimpleNamespace(upgraded=False, read=self._read)
        self._message = message
        self._payload = payload
        self._callbacks: list[Callable[[], None]] = []

    async def _read(self) -> tuple[Any, Any]:
        return self._message, self._payload

    def add_callback(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def release(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    close = release


def _new_response(response_class: type, *args: Any, **kwargs: Any) -> Any:
    accepted = _parameters(response_class)
    return response_class(*args, **{k: v for k, v in kwargs.items() if k in accepted})


@functools.cache
def _parameters(response_class: type) -> frozenset[str]:
    """What this aiohttp version's ClientResponse accepts (``stream_writer`` is recent)."""
    return frozenset(inspect.signature(response_class.__init__).parameters)


def _error(module: ModuleType, error: dict[str, Any], request: Any) -> BaseException:
    if error.get("type") == "CancelledError":
        # aiohttp's own timeout (or the agent's asyncio.timeout) cancelled the live call: the
        # agent saw a TimeoutError
        return asyncio.TimeoutError()
    exc = rebuild_error(error, module.ClientError)
    if isinstance(exc, module.ClientConnectorError) and isinstance(
        getattr(exc, "_os_error", None), OSError
    ):
        return type(exc)(request.connection_key, exc._os_error)
    return exc
