"""Where we are: the innermost step and its redaction rules, kept in the OpenTelemetry context.

Keeping this state in the OTel context (not a private ContextVar) means it travels wherever the
OTel context travels: asyncio tasks, and the threads we propagate context into.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context

from ._redaction import EMPTY, Rules

_STEP_KEY = otel_context.create_key("agenttrace-step")
_IN_CALL_KEY = otel_context.create_key("agenttrace-in-call")
_IN_TOOL_KEY = otel_context.create_key("agenttrace-in-tool")


@dataclass
class StepState:
    name: str
    rules: Rules
    span: Any
    result: Any = None
    has_result: bool = False


def current_step() -> StepState | None:
    return otel_context.get_value(_STEP_KEY)  # type: ignore[return-value]


def current_rules() -> Rules:
    step = current_step()
    return step.rules if step is not None else EMPTY


def with_step(state: StepState, ctx: otel_context.Context | None = None) -> otel_context.Context:
    return otel_context.set_value(_STEP_KEY, state, ctx)


# A flow names a line of work reproducibly: "main", then "main/job3" for the third job it
# submitted to an executor, "main/thread1" for the first thread it started, "main/task2" for the
# second asyncio task, and so on. Which OS thread runs a job, and how asyncio numbers its tasks
# (a client may create tasks of its own while a call is live, but not when it is served), vary
# from run to run; the order in which one flow starts work does not.
# A thread's flow is kept per thread (a job runs on one thread), not in a context:
# ``asyncio.to_thread`` runs its function inside a context copied before the job was submitted.
# A task's flow is kept per task object.
_flow_counters: dict[tuple[str, str], itertools.count[int]] = {}
_flow_lock = threading.Lock()
_running = threading.local()
_task_flows: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def current_flow() -> str:
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    thread = getattr(_running, "flow", None) or "main"
    if task is None:
        return thread
    try:
        flow = _task_flows[task]
    except (KeyError, TypeError):  # a task we did not see created (before we started)
        return f"{thread}|{task.get_name()}"
    return flow or f"{thread}|{task.get_name()}"


def name_task(task: Any, flow: str | None) -> None:
    """Remember the flow of a task just created (None: the client's own, inside a call)."""
    try:
        _task_flows[task] = flow
    except TypeError:
        pass


def reset_flows() -> None:
    """A new session numbers its work from the start again."""
    with _flow_lock:
        _flow_counters.clear()


def next_flow(kind: str) -> str:
    """The name of the next piece of work of ``kind`` that the current flow starts."""
    parent = current_flow()
    with _flow_lock:
        counter = _flow_counters.setdefault((parent, kind), itertools.count(1))
        n = next(counter)
    return f"{parent}/{kind}{n}"


@contextmanager
def running_as(flow: str | None) -> Iterator[None]:
    previous = getattr(_running, "flow", None)
    _running.flow = flow or previous
    try:
        yield
    finally:
        _running.flow = previous


def in_call() -> bool:
    return bool(otel_context.get_value(_IN_CALL_KEY))


def enter_call() -> object:
    return otel_context.attach(otel_context.set_value(_IN_CALL_KEY, True))


def exit_call(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def in_tool() -> int | None:
    """The seq of the ``agenttrace.tool`` call whose body is running here, if any: what the body
    does is not replayed (a replay returns the recorded result without running it)."""
    return otel_context.get_value(_IN_TOOL_KEY)  # type: ignore[return-value]


def with_tool(seq: int, ctx: otel_context.Context | None = None) -> otel_context.Context:
    return otel_context.set_value(_IN_TOOL_KEY, seq, ctx)


def unreplayed() -> bool:
    """Work a replay will not do again: a client's own work inside an intercepted call, or a
    tool's body. Its clock reads, entropy draws and threads are not the agent's to replay."""
    return in_call() or in_tool() is not None
