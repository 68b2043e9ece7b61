"""Carry the OpenTelemetry context into threads, as asyncio already does into tasks, and name
each piece of work the agent starts (its flow, see ``_context``).

Steps nest across ``concurrent.futures`` and ``threading.Thread`` only if the worker sees the
context of the code that submitted the work. Only the OTel context travels (like
opentelemetry-instrumentation-threading), not every ContextVar of the application.
"""

from __future__ import annotations

import asyncio.base_events
import concurrent.futures.thread
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context

from . import _context
from ._patches import Patches

_EXECUTOR_WORKER = getattr(concurrent.futures.thread, "_worker", None)
_MACHINERY_THREADS = ("agenttrace", "OtelBatch")


def _flow(kind: str) -> str | None:
    # Work a client does inside an intercepted call (asyncio resolving a host name in the
    # default executor) happens when recording but not in replay: it gets no flow, so it cannot
    # shift the numbering of the agent's own work. Nor does a tool's body (not run in replay).
    return None if _context.unreplayed() else _context.next_flow(kind)


def install(patches: Patches) -> None:
    original_submit = ThreadPoolExecutor.submit
    original_start = threading.Thread.start

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        ctx = otel_context.get_current()
        flow = _flow("job")

        def call_in_context(*a: Any, **kw: Any) -> Any:
            token = otel_context.attach(ctx)
            try:
                with _context.running_as(flow):
                    return fn(*a, **kw)
            finally:
                otel_context.detach(token)

        return original_submit(self, call_in_context, *args, **kwargs)

    def start(self: threading.Thread) -> None:
        ctx = otel_context.get_current()
        # An executor spawns its workers on demand, as timing allows: they get no flow of their
        # own (their jobs do), so they do not shift the numbering of real threads; nor do the
        # threads of the telemetry machinery (ours, the SDK's), which come and go with timing.
        own = getattr(self, "_target", None) is _EXECUTOR_WORKER or self.name.startswith(
            _MACHINERY_THREADS
        )
        flow = None if own else _flow("thread")
        target_run = self.run  # bound: also covers subclasses that override run()

        def run_in_context() -> None:
            token = otel_context.attach(ctx)
            try:
                with _context.running_as(flow):
                    target_run()
            finally:
                otel_context.detach(token)

        self.run = run_in_context  # type: ignore[method-assign]
        original_start(self)

    loop_class = asyncio.base_events.BaseEventLoop
    original_create_task = loop_class.create_task

    def create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
        task = original_create_task(self, coro, *args, **kwargs)
        _context.name_task(task, _flow("task"))
        return task

    _context.reset_flows()
    patches.replace(ThreadPoolExecutor, "submit", submit)
    patches.replace(threading.Thread, "start", start)
    patches.replace(loop_class, "create_task", create_task)
