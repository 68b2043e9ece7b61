"""``agenttrace.tool``: a function boundary recorded as one event and served in replay.

What no instrumentor can see (a database driver, gRPC, a native SDK, a side-effecting tool) is
captured at the function that calls it: its arguments and its result, yielded items or exception.
In replay the body does not run; the recorded outcome comes back (``capture.values`` round-trips
the values exactly). Sync and async functions, generators and async generators.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from . import _context
from .capture import ToolCall, ToolRun, begin_tool, intercepting, rebuild_error, values

logger = logging.getLogger("agenttrace")

Codec = Callable[[Any], Any]


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    encode: Codec | None = None,
    decode: Codec | None = None,
) -> Any:
    """Record each call of ``fn`` (arguments, result or exception) and serve it in replay.

    ``@agenttrace.tool``, ``@agenttrace.tool(name="db.query")``, or
    ``agenttrace.tool(cursor.execute, name="sqlite.execute")`` for a third-party callable.
    ``encode``/``decode`` convert values the codec does not know (JSON types, tuple, bytes, set,
    datetime/date, Decimal, UUID, enums, dataclasses and pydantic models round-trip as they are).
    """
    if fn is None:
        return lambda f: tool(f, name=name, encode=encode, decode=decode)
    if not callable(fn):
        raise TypeError(f"agenttrace.tool wraps a callable, not {type(fn).__name__}")
    return _Tool(fn, name or _name_of(fn), encode, decode).wrapper()


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


class _Tool:
    def __init__(
        self, fn: Callable[..., Any], name: str, encode: Codec | None, decode: Codec | None
    ) -> None:
        self.fn = fn
        self.name = name
        self.encode = encode
        self.decode = decode
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none
            self.signature = None
        first = next(iter(self.signature.parameters), "") if self.signature else ""
        # a method decorated in its class: its instance is not an argument of the call
        self.skips_self = inspect.isfunction(fn) and first in ("self", "cls")

    # -- one call -------------------------------------------------------------------------------

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolRun | None:
        if not intercepting():
            return None
        try:
            encoded = values.encode(self._arguments(args, kwargs), self.encode)
        except (values.UnencodableValue, TypeError) as exc:
            logger.error(
                "agenttrace: tool %r: its arguments cannot be recorded (%s); the call runs "
                "unrecorded",
                self.name,
                exc,
            )
            return None
        return begin_tool(ToolCall(self.name, encoded))

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.signature is None:
            return {"args": list(args), "kwargs": kwargs}
        bound = dict(self.signature.bind(*args, **kwargs).arguments)
        if self.skips_self and bound:
            bound.pop(next(iter(bound)))
        return bound

    def record(self, run: ToolRun, report: Callable[[Any], None], value: Any) -> None:
        """Report a result or an item; a value the codec cannot encode is logged, never raised
        (the agent's call still returns it)."""
        try:
            report(values.encode(value, self.encode))
        except Exception as exc:
            message = f"tool {self.name!r} produced a {type(value).__qualname__}: {exc}"
            logger.error("agenttrace: %s", message)
            run.unrecordable(message)

    def served(self, run: ToolRun, key: str = "result") -> Any:
        recorded = run.recorded or {}
        return values.decode(recorded.get(key), self.decode)

    def raise_recorded(self, run: ToolRun) -> None:
        error = (run.recorded or {}).get("error")
        if error is not None:
            raise rebuild_error(error, Exception)

    @contextmanager
    def body(self, run: ToolRun) -> Iterator[None]:
        """The body runs under the tool's span, marked so what it does is not expected in
        replay; its exception is recorded and raised."""
        ctx = trace.set_span_in_context(run.span, otel_context.get_current())
        token = otel_context.attach(_context.with_tool(run.seq, ctx))
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, (GeneratorExit, StopIteration, StopAsyncIteration)):
                run.record_error(exc)
            raise
        finally:
            otel_context.detach(token)

    # -- the wrappers, per kind of function -------------------------------------------------------

    def wrapper(self) -> Callable[..., Any]:
        fn = self.fn
        if inspect.isasyncgenfunction(fn):
            wrapped: Any = self._async_generator()
        elif inspect.iscoroutinefunction(fn):
            wrapped = self._coroutine()
        elif inspect.isgeneratorfunction(fn):
            wrapped = self._generator()
        else:
            wrapped = self._function()
        try:
            functools.update_wrapper(wrapped, fn)
        except (AttributeError, TypeError):  # a callable object without __name__ and friends
            pass
        wrapped.__agenttrace_tool__ = self.name
        return wrapped

    def _function(self) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            run = self.begin(args, kwargs)
            if run is None:
                return self.fn(*args, **kwargs)
            try:
                if run.recorded is not None:
                    self.raise_recorded(run)
                    return self.served(run)
                with self.body(run):
                    result = self.fn(*args, **kwargs)
                self.record(run, run.returned, result)
                return result
            finally:
                run.close()

        return call

    def _coroutine(self) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            run = self.begin(args, kwargs)
            if run is None:
                return await self.fn(*args, **kwargs)
            try:
                if run.recorded is not None:
                    self.raise_recorded(run)
                    return self.served(run)
                with self.body(run):
                    result = await self.fn(*args, **kwargs)
                self.record(run, run.returned, result)
                return result
            finally:
                run.close()

        return call

    def _generator(self) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            run = self.begin(args, kwargs)
            if run is None:
                return (yield from self.fn(*args, **kwargs))
            try:
                if run.recorded is not None:
                    for item in self.served(run, "items") or ():
                        yield item
                    self.raise_recorded(run)
                    return self.served(run)
                with self.body(run):
                    gen = self.fn(*args, **kwargs)
                value: Any = None
                while True:
                    try:
                        with self.body(run):
                            item = gen.send(value)
                    except StopIteration as stop:
                        self.record(run, run.returned, stop.value)
                        return stop.value
                    self.record(run, run.yielded, item)
                    try:
                        value = yield item
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as exc:  # thrown in by the caller: the body's to handle
                        with self.body(run):
                            item = gen.throw(exc)
                        self.record(run, run.yielded, item)
                        value = yield item
            finally:
                run.close()

        return call

    def _async_generator(self) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            run = self.begin(args, kwargs)
            if run is None:
                async for item in self.fn(*args, **kwargs):
                    yield item
                return
            try:
                if run.recorded is not None:
                    for item in self.served(run, "items") or ():
                        yield item
                    self.raise_recorded(run)
                    return
                with self.body(run):
                    agen = self.fn(*args, **kwargs)
                value: Any = None
                while True:
                    try:
                        with self.body(run):
                            item = await agen.asend(value)
                    except StopAsyncIteration:
                        return
                    self.record(run, run.yielded, item)
                    value = yield item
            finally:
                run.close()

        return call
