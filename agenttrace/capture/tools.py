"""Function boundaries: one call of an ``agenttrace.tool`` as the wrapper reports it.

The wrapper turns the call into a :class:`ToolCall` (its name and arguments, encoded by
``capture.values``), gets a :class:`ToolRun` from :func:`agenttrace.capture.begin_tool`, and then
either serves ``run.recorded`` (a Player: the body does not run) or runs the body and reports
what it returned, yielded or raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

from .. import _trace
from .base import Capture


@dataclass
class ToolCall:
    name: str
    args: Any  # encoded (capture.values): JSON


def span_start(call: ToolCall, seq: int) -> tuple[str, dict[str, Any]]:
    """The INTERNAL span of a tool call (GenAI semantic conventions): name and attributes."""
    attributes = {
        gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value,
        gen_ai.GEN_AI_TOOL_NAME: call.name,
        gen_ai.GEN_AI_TOOL_TYPE: "function",
        _trace.ATTR_SEQ: seq,
    }
    return f"execute_tool {call.name}", attributes


def argument_paths(paths: list[str]) -> list[str]:
    """Redacted paths of the arguments, as paths in the event."""
    return [f"args.{p}" if p else "args" for p in paths]


class ToolRun(Capture):
    """A tool call whose body runs: its result, yielded items or exception, as JSON."""

    kind = "tool"
    recorded: dict[str, Any] | None = None  # the recorded event, when a Player serves it

    def __init__(
        self,
        owner: Any,
        call: ToolCall,
        *,
        args: Any,
        redacted: list[str],
        **where: Any,
    ) -> None:
        super().__init__(owner, **where)
        self.call = call
        self.args = args  # redacted: also the replay key
        self.redacted = redacted
        self._outcome: dict[str, Any] = {}
        self._items: list[Any] | None = None

    def returned(self, encoded: Any) -> None:
        self._outcome["result"] = encoded

    def yielded(self, encoded: Any) -> None:
        if self._items is None:
            self._items = []
        self._items.append(encoded)

    def unrecordable(self, message: str) -> None:
        """The outcome could not be encoded: the event says so, and a replay cannot serve it."""
        self._outcome = {"unrecordable": message}
        self._items = None

    def _finish(self) -> None:
        event = self.event_head()
        event.update(name=self.call.name, args=self.args)
        if self._items is not None and "unrecordable" not in self._outcome:
            event["items"] = self._items
        event.update(self._outcome)
        if self._error is not None and "unrecordable" not in self._outcome:
            event["error"] = self._error
        event["duration_ms"] = self.duration_ms()
        event["redacted"] = self.redacted
        self.owner.finish(self, event)


class ServedTool(ToolRun):
    """A tool call answered from the recording."""

    def __init__(self, owner: Any, call: ToolCall, recorded: dict[str, Any], **kwargs: Any):
        super().__init__(owner, call, **kwargs)
        self.recorded = recorded

    def _finish(self) -> None:
        event = {k: v for k, v in self.recorded.items() if k not in ("seq", "span_id", "step")}
        event.update(self.event_head())
        self.owner.finish(self, event)
