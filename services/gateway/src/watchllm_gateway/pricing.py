"""Cost of a request from its token counts, by model.

The built-in table holds list prices in USD per million tokens; an operator overrides
or extends it with ``WATCHLLM_PRICES`` (JSON) or ``WATCHLLM_PRICE_TABLE_PATH`` (a JSON
file), later sources winning. A model matches its exact entry, else the longest entry
that prefixes it followed by ``-`` (so dated snapshots such as ``gpt-4o-2024-08-06``
price as ``gpt-4o``). A model with no entry costs 0 and is counted in
``watchllm_unpriced_requests_total`` so the gap is visible (under its own name when
the operator configured it, else as ``other``: see ``metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import orjson

from watchllm_gateway.settings import ModelPrice

_MILLION = Decimal(1_000_000)

_BUILT_IN: dict[str, tuple[str, str]] = {
    "gpt-5": ("1.25", "10"),
    "gpt-5-mini": ("0.25", "2"),
    "gpt-5-nano": ("0.05", "0.40"),
    "gpt-4.1": ("2", "8"),
    "gpt-4.1-mini": ("0.40", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.40"),
    "gpt-4o": ("2.50", "10"),
    "gpt-4o-mini": ("0.15", "0.60"),
    "o3": ("2", "8"),
    "o3-mini": ("1.10", "4.40"),
    "o4-mini": ("1.10", "4.40"),
    "text-embedding-3-small": ("0.02", "0"),
    "text-embedding-3-large": ("0.13", "0"),
    "claude-opus-4-1": ("15", "75"),
    "claude-sonnet-4-5": ("3", "15"),
    "claude-sonnet-4": ("3", "15"),
    "claude-haiku-4-5": ("1", "5"),
    "claude-3-5-haiku": ("0.80", "4"),
}


def built_in_prices() -> dict[str, ModelPrice]:
    return {
        model: ModelPrice(input_per_million=Decimal(i), output_per_million=Decimal(o))
        for model, (i, o) in _BUILT_IN.items()
    }


class PriceTable:
    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)
        # Longest first, so the most specific prefix wins.
        self._by_length = sorted(self._prices, key=len, reverse=True)

    @classmethod
    def load(cls, overrides: Mapping[str, ModelPrice], path: Path | None) -> PriceTable:
        prices = built_in_prices()
        if path is not None:
            raw = orjson.loads(path.read_bytes())
            prices.update({m: ModelPrice.model_validate(p) for m, p in raw.items()})
        prices.update(overrides)
        return cls(prices)

    def models(self) -> set[str]:
        """The names with a price of their own (not the snapshots priced by prefix)."""
        return set(self._prices)

    def price_of(self, model: str) -> ModelPrice | None:
        exact = self._prices.get(model)
        if exact is not None:
            return exact
        for name in self._by_length:
            if model.startswith(name + "-"):
                return self._prices[name]
        return None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
        """USD for these tokens, or None when the model has no price."""
        price = self.price_of(model)
        if price is None:
            return None
        return (
            price.input_per_million * prompt_tokens + price.output_per_million * completion_tokens
        ) / _MILLION
