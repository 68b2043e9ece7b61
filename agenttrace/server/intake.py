"""Reading an ingest body: decoded as it arrives, bounded in size and time, and admitted so that
only a few large bodies are in memory at once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable

import anyio
import anyio.to_thread
from starlette.requests import Request

from .inflate import Inflater
from .limits import Limits
from .otlp import PayloadError


class Intake:
    """One per app: the large-ingest slots and the threads that inflate bodies."""

    def __init__(self, limits: Limits, threads: anyio.CapacityLimiter) -> None:
        self.limits = limits
        self._threads = threads
        self._large = anyio.Semaphore(limits.max_large_ingests)

    @contextlib.asynccontextmanager
    async def body(self, request: Request) -> AsyncIterator[bytearray]:
        """The decoded body; a large one keeps its slot until the block exits (its decoding and
        storing is where the memory goes). Raises PayloadError (408, 413, 400, 415)."""
        reader = _Reader(request, self.limits.body_timeout)
        async with contextlib.AsyncExitStack() as slot:
            try:
                body = await self._read(request, reader, slot)
            except PayloadError as exc:
                exc.body_unread = not reader.done
                raise
            yield body

    async def _read(
        self, request: Request, reader: _Reader, slot: contextlib.AsyncExitStack
    ) -> bytearray:
        limits = self.limits
        inflater = Inflater(
            request.headers.get("content-encoding"),
            limits.max_request_bytes,
            limits.max_compressed_members,
        )
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else 0
        if size > limits.max_request_bytes:
            raise PayloadError(
                413,
                f"request body of {size} bytes exceeds the {limits.max_request_bytes}-byte limit",
            )
        holding = size >= limits.large_ingest_bytes
        if holding:
            await reader.pause_while(self._take(slot))
        async for chunk in reader:
            if inflater.coding in ("", "identity"):
                inflater.feed(chunk)
            else:
                await anyio.to_thread.run_sync(inflater.feed, chunk, limiter=self._threads)
            if not holding and inflater.size >= limits.large_ingest_bytes:
                await reader.pause_while(self._take(slot))
                holding = True
        return inflater.finish()

    async def _take(self, stack: contextlib.AsyncExitStack) -> None:
        await stack.enter_async_context(self._large)


class _Reader:
    """The body's chunks, the whole of them within ``timeout`` seconds of reading time."""

    def __init__(self, request: Request, timeout: float) -> None:
        self._receive = request.receive
        self._timeout = timeout
        self._deadline = anyio.current_time() + timeout
        self.done = False

    async def pause_while(self, waiting: Awaitable[None]) -> None:
        """Await ``waiting`` without counting the time against the body's deadline."""
        began = anyio.current_time()
        await waiting
        self._deadline += anyio.current_time() - began

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> bytes:
        while not self.done:
            with anyio.move_on_after(self._deadline - anyio.current_time()) as scope:
                message = await self._receive()
            if scope.cancelled_caught:
                raise PayloadError(
                    408, f"the request body did not arrive within {self._timeout:g} s (the limit)"
                )
            if message["type"] == "http.disconnect":
                raise PayloadError(400, "the client disconnected before sending the whole body")
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                return chunk
        raise StopAsyncIteration
