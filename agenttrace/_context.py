"""Where we are: the innermost step and its redaction rules, kept in the OpenTelemetry context.

Keeping this state in the OTel context (not a private ContextVar) means it travels wherever the
OTel context travels: asyncio tasks, and the threads we propagate context into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context

from ._redaction import EMPTY, Rules

_STEP_KEY = otel_context.create_key("agenttrace-step")
_IN_CALL_KEY = otel_context.create_key("agenttrace-in-call")


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


def in_call() -> bool:
    return bool(otel_context.get_value(_IN_CALL_KEY))


def enter_call() -> object:
    return otel_context.attach(otel_context.set_value(_IN_CALL_KEY, True))


def exit_call(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]
