"""Tokens and cost of LLM calls, and the totals of a run.

Prices come from ``genai-prices`` (Pydantic's maintained price table). Its data is bundled with
the package, so pricing works offline; its auto-update (a download) is never started here. It
is optional — the ``agenttrace[cost]`` extra, because it brings pydantic and needs Python
3.11+ — and without it, or for a model the table does not know, a call has tokens and no cost:
never a guess.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import _trace
from ._genai import LLMCall, Usage, llm_calls

logger = logging.getLogger("agenttrace")

# genai-prices names some providers its own way; others are the same as gen_ai.provider.name.
_PRICE_PROVIDERS = {
    "azure.ai.openai": "azure",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "gcp.gemini": "google",
}

# Root span attributes for a run's totals (there is no GenAI convention for them, and gen_ai.usage.*
# on the root would be counted twice by backends that sum the spans of a trace).
ATTR_RUN_CALLS = "agenttrace.run.calls"
ATTR_RUN_LLM_CALLS = "agenttrace.run.llm_calls"
ATTR_RUN_USAGE_PREFIX = "agenttrace.run.usage."
ATTR_RUN_COST = "agenttrace.run.cost_usd"


def pricing_source() -> str | None:
    """The price table in use ("genai-prices 0.2.3"), or None when it is not installed."""
    prices = _prices()
    return f"genai-prices {prices.__version__}" if prices is not None else None


@functools.lru_cache(maxsize=1)
def _prices() -> Any:
    try:
        import genai_prices
    except ImportError:  # the optional extra (agenttrace[cost]) is not installed
        return None
    return genai_prices


def call_cost(call: LLMCall, at: datetime | None = None) -> float | None:
    """The price of one call in USD, or None when its model (or any price table) is unknown.

    ``at`` is when the call was made (prices change; default: now).
    """
    model = call.model
    if model is None or not call.usage.reported():
        return None
    provider = _PRICE_PROVIDERS.get(call.provider, call.provider)
    return _price(provider, model, _usage_key(call.usage), at)


def _usage_key(usage: Usage) -> tuple[tuple[str, int], ...]:
    """The usage as genai-prices keyword arguments (its names are ours), hashable."""
    values = {"input_tokens": usage.input_tokens or 0, "output_tokens": usage.output_tokens or 0}
    for name in ("cache_read_tokens", "cache_write_tokens"):
        if getattr(usage, name):
            values[name] = getattr(usage, name)
    return tuple(sorted(values.items()))


# A loop calling one model with one prompt is common, and a lookup costs ~0.1 ms.
@functools.lru_cache(maxsize=4096)
def _price(
    provider: str, model: str, usage: tuple[tuple[str, int], ...], at: datetime | None
) -> float | None:
    prices = _prices()
    if prices is None or (provider, model) in _UNKNOWN_MODELS:
        return None
    try:
        price = prices.calc_price(
            prices.Usage(**dict(usage)), model, provider_id=provider, genai_request_timestamp=at
        )
    except LookupError:  # a model (or provider) the table does not know
        _UNKNOWN_MODELS.add((provider, model))
        return None
    except Exception:  # an entry it cannot apply: tokens without cost, never a failure
        logger.debug("agenttrace: no price for %s/%s", provider, model, exc_info=True)
        return None
    return float(price.total_price)


# Misses are remembered by model, whatever the usage, so an unknown model costs one lookup.
_UNKNOWN_MODELS: set[tuple[str, str]] = set()


@dataclass
class ModelTotals:
    calls: int = 0
    usage: Usage = Usage()
    cost_usd: float | None = None

    def add(self, usage: Usage, cost: float | None) -> None:
        self.calls += 1
        self.usage = self.usage + usage
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost


@dataclass
class RunTotals:
    """What a run used: calls, tokens and (where priced) cost."""

    calls: int = 0  # I/O calls of any kind (HTTP, websocket, MCP, tool)
    llm_calls: int = 0
    usage: Usage = Usage()
    cost_usd: float | None = None  # of the priced calls; None when none was priced
    by_model: dict[str, ModelTotals] = field(default_factory=dict)
    pricing: str | None = None

    @property
    def unpriced_models(self) -> list[str]:
        """Models that used tokens and have no price (their calls are left out of the cost)."""
        return sorted(
            m for m, t in self.by_model.items() if t.cost_usd is None and t.usage.reported()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "llm_calls": self.llm_calls,
            "usage": self.usage.as_dict(),
            "cost_usd": _round_usd(self.cost_usd),
            "unpriced_models": self.unpriced_models,
            "pricing": self.pricing,
            "by_model": {
                model: {
                    "calls": t.calls,
                    "usage": t.usage.as_dict(),
                    "cost_usd": _round_usd(t.cost_usd),
                }
                for model, t in sorted(self.by_model.items())
            },
        }

    def span_attributes(self) -> dict[str, Any]:
        """Attributes for the run's root span."""
        attrs: dict[str, Any] = {ATTR_RUN_CALLS: self.calls, ATTR_RUN_LLM_CALLS: self.llm_calls}
        for name, value in self.usage.as_dict().items():
            attrs[ATTR_RUN_USAGE_PREFIX + name] = value
        if self.cost_usd is not None:
            attrs[ATTR_RUN_COST] = _round_usd(self.cost_usd)
        return attrs


def _round_usd(value: float | None) -> float | None:
    # Prices are per million tokens: ten decimals keep a single cheap token exact.
    return None if value is None else round(value, 10)


def run_totals(events: Iterable[Mapping[str, Any]], at: datetime | None = None) -> RunTotals:
    """Totals over the events of a run; ``at`` is when the run started (for the prices)."""
    events = list(events)
    calls = sum(1 for e in events if _trace.is_call(e))
    return totals_of(calls, (call for _, call in llm_calls(events)), at)


def totals_of(calls: int, llm: Iterable[LLMCall], at: datetime | None = None) -> RunTotals:
    """Totals from LLM calls already read (``calls``: how many calls of any kind the run made)."""
    totals = RunTotals(calls=calls, pricing=pricing_source())
    for call in llm:
        totals.llm_calls += 1
        totals.usage = totals.usage + call.usage
        cost = call_cost(call, at)
        totals.by_model.setdefault(call.model or "?", ModelTotals()).add(call.usage, cost)
        if cost is not None:
            totals.cost_usd = (totals.cost_usd or 0.0) + cost
    return totals
