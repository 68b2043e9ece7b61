"""httpx and httpx2 (the OpenAI and Anthropic SDKs' client): the transport is the extension point.

Both packages share one API, so one adapter serves both; ``patch`` is called per module object.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from agenttrace._exchange import Exchange, HttpCall, atee, begin, intercepting, tee

from . import already_patched


def patch(module: ModuleType) -> None:
    if already_patched(module):
        return
    client = module.__name__
    _patch_sync(module, client)
    _patch_async(module, client)


def _call(request: Any, client: str, body: bytes) -> HttpCall:
    return HttpCall(
        method=request.method,
        url=str(request.url),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
        body=body,
        client=client,
    )


def _body(module: ModuleType, request: Any) -> bytes | None:
    try:
        return request.content
    except module.RequestNotRead:
        return None  # a streaming upload, read by the caller below


def _report_response(exchange: Exchange, response: Any) -> None:
    reason = response.extensions.get("reason_phrase", b"")
    version = response.extensions.get("http_version", b"")
    exchange.response(
        response.status_code,
        response.headers.raw,
        reason=reason.decode("latin-1") if isinstance(reason, bytes) else reason,
        http_version=version.decode("latin-1") if isinstance(version, bytes) else version,
    )


def _exception(module: ModuleType, error: dict[str, Any], request: Any) -> BaseException:
    cls = getattr(module, error.get("type", ""), None)
    message = error.get("message", "")
    if isinstance(cls, type) and issubclass(cls, module.RequestError):
        return cls(message, request=request)
    if isinstance(cls, type) and issubclass(cls, module.HTTPError):
        return cls(message)
    return module.TransportError(message)


def _served(module: ModuleType, exchange: Exchange, request: Any, stream: Any) -> Any:
    """The recorded response as this client's Response, or the recorded error raised."""
    answer = exchange.answer
    assert answer is not None
    if not answer.has_response:
        exc = _exception(module, answer.error or {}, request)
        exchange.fail(exc)
        raise exc
    response = module.Response(
        status_code=answer.status,
        headers=answer.headers,
        stream=stream,
        extensions={
            "http_version": answer.http_version.encode("latin-1"),
            "reason_phrase": answer.reason.encode("latin-1"),
        },
        request=request,
    )
    _report_response(exchange, response)
    return response


def _patch_sync(module: ModuleType, client: str) -> None:
    transport = module.HTTPTransport
    original = transport.handle_request

    class TeeStream(module.SyncByteStream):
        def __init__(self, inner: Any, exchange: Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        def __iter__(self) -> Any:
            return tee(iter(self._inner), self._exchange)

        def close(self) -> None:
            try:
                if hasattr(self._inner, "close"):
                    self._inner.close()
            finally:
                self._exchange.close()

    class ReplayStream(module.SyncByteStream):
        def __init__(self, exchange: Exchange, request: Any) -> None:
            self._exchange = exchange
            self._request = request

        def __iter__(self) -> Any:
            answer = self._exchange.answer
            yield from answer.chunks()
            if answer.error is not None:
                raise _exception(module, answer.error, self._request)

    def handle_request(self: Any, request: Any) -> Any:
        if not intercepting():  # nothing records: a streamed upload stays streamed
            return original(self, request)
        body = _body(module, request)
        if body is None:  # read a streaming upload once and hand the transport the same bytes
            body = request.read()
            request.stream = module.ByteStream(body)
        exchange = begin(_call(request, client, body))
        if exchange is None:
            return original(self, request)
        if exchange.answer is not None:
            response = _served(module, exchange, request, ReplayStream(exchange, request))
        else:
            with exchange.sending():
                response = original(self, request)
            _report_response(exchange, response)
        response.stream = TeeStream(response.stream, exchange)
        return response

    handle_request.__wrapped__ = original  # type: ignore[attr-defined]
    transport.handle_request = handle_request


def _patch_async(module: ModuleType, client: str) -> None:
    transport = module.AsyncHTTPTransport
    original = transport.handle_async_request

    class AsyncTeeStream(module.AsyncByteStream):
        def __init__(self, inner: Any, exchange: Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        def __aiter__(self) -> Any:
            return atee(self._inner.__aiter__(), self._exchange)

        async def aclose(self) -> None:
            try:
                if hasattr(self._inner, "aclose"):
                    await self._inner.aclose()
            finally:
                self._exchange.close()

    class AsyncReplayStream(module.AsyncByteStream):
        def __init__(self, exchange: Exchange, request: Any) -> None:
            self._exchange = exchange
            self._request = request

        async def __aiter__(self) -> Any:
            answer = self._exchange.answer
            for data in answer.chunks():
                yield data
            if answer.error is not None:
                raise _exception(module, answer.error, self._request)

    async def handle_async_request(self: Any, request: Any) -> Any:
        if not intercepting():
            return await original(self, request)
        body = _body(module, request)
        if body is None:
            body = await request.aread()
            request.stream = module.ByteStream(body)
        exchange = begin(_call(request, client, body))
        if exchange is None:
            return await original(self, request)
        if exchange.answer is not None:
            response = _served(module, exchange, request, AsyncReplayStream(exchange, request))
        else:
            with exchange.sending():
                response = await original(self, request)
            _report_response(exchange, response)
        response.stream = AsyncTeeStream(response.stream, exchange)
        return response

    handle_async_request.__wrapped__ = original  # type: ignore[attr-defined]
    transport.handle_async_request = handle_async_request
