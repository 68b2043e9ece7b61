"""httpx and httpx2 (the OpenAI and Anthropic SDKs' client), whatever transport the client uses.

Interception sits in the client, where it picks the transport for a request
(``Client._transport_for_url``, called once per hop by ``_send_single_request``, right before
``transport.handle_request``): every request of every client goes through it, whatever transport
was mounted — the default one, a proxy, litellm's ``LiteLLMAiohttpTransport``, openai's
``DefaultAioHttpClient`` (httpx-aiohttp), a user's own. We hand back the client's transport
wrapped in an intercepting one, so httpx's own sending code (redirects, auth, cookies, the bound
stream, logging) runs unchanged around a recorded or served answer. Patching the transport
classes instead misses every third-party transport; patching ``send`` would make a redirect one
event and hide its hops. Whatever the inner transport does (aiohttp underneath) happens inside the
exchange, where other instrumentors step aside: the call is captured once.

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
    sync, async_ = _sync(module, client), _async(module, client)
    for cls, transport in ((module.Client, sync), (module.AsyncClient, async_)):
        original = cls._transport_for_url
        patches.replace(cls, "_transport_for_url", _choosing(original, transport))


def _choosing(original: Any, intercepting: type) -> Any:
    @when_intercepting(original)
    def _transport_for_url(self: Any, url: Any) -> Any:
        return intercepting(original(self, url))

    return _transport_for_url


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


def _sync(module: ModuleType, client: str) -> type:

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

    class InterceptingTransport(module.BaseTransport):
        """The client's transport for one request, with the request intercepted."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def handle_request(self, request: Any) -> Any:
            body = _body(module, request)
            if body is None:  # read a streaming upload once and hand the transport the same bytes
                body = request.read()
                request.stream = module.ByteStream(body)
            exchange = begin(_call(request, client, body))
            if exchange is None:
                return self.inner.handle_request(request)
            if exchange.answer is not None:
                response = _served(module, exchange, request, ReplayStream(exchange, request))
            else:
                with exchange.sending():
                    response = self.inner.handle_request(request)
                _report_response(exchange, response)
            response.stream = TeeStream(response.stream, exchange)
            return response

    return InterceptingTransport


def _async(module: ModuleType, client: str) -> type:

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

    class AsyncInterceptingTransport(module.AsyncBaseTransport):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def handle_async_request(self, request: Any) -> Any:
            body = _body(module, request)
            if body is None:
                body = await request.aread()
                request.stream = module.ByteStream(body)
            exchange = begin(_call(request, client, body))
            if exchange is None:
                return await self.inner.handle_async_request(request)
            if exchange.answer is not None:
                response = _served(module, exchange, request, AsyncReplayStream(exchange, request))
            else:
                with exchange.sending():
                    response = await self.inner.handle_async_request(request)
                _report_response(exchange, response)
            response.stream = AsyncTeeStream(response.stream, exchange)
            return response

    return AsyncInterceptingTransport
