"""httpx and httpx2 (the OpenAI and Anthropic SDKs' client): the transport is the extension point.

Both packages share one API, so one adapter serves both; ``patch`` is called per module object.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from agenttrace._patches import Patches
from agenttrace.capture import Exchange, HttpCall, atee, begin, rebuild_error, tee
from agenttrace.capture.mode import when_intercepting


def patch(module: ModuleType, patches: Patches) -> None:
    client = module.__name__
    sync, async_ = module.HTTPTransport, module.AsyncHTTPTransport
    patches.replace(sync, "handle_request", _sync(module, client, sync.handle_request))
    patches.replace(
        async_, "handle_async_request", _async(module, client, async_.handle_async_request)
    )


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
    # httpx's errors carry the request they failed on (``exc.request``); a recording cannot.
    return rebuild_error(error, module.TransportError, overrides={"_request": request})


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


def _sync(module: ModuleType, client: str, original: Any) -> Any:

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

    @when_intercepting(original)  # otherwise untouched: a streamed upload stays streamed
    def handle_request(self: Any, request: Any) -> Any:
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

    return handle_request


def _async(module: ModuleType, client: str, original: Any) -> Any:

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

    @when_intercepting(original)
    async def handle_async_request(self: Any, request: Any) -> Any:
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

    return handle_async_request
