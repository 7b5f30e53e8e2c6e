"""What a model call cost, from a shipped table of list prices that the user's settings override.

The table (``prices.toml``, package data) is read once, on first use, and holds a handful of
well-known models with the date the prices were taken. The budget check behind ``--max-cost`` needs
a price: for a model that is in neither the table nor the overrides, ``price_for`` returns ``None``
and the cost stays 0.0, so the caller can say that the cost limit cannot be enforced.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Protocol

from deepresearch.llm.messages import Usage

_PREFIX_SEPARATORS = frozenset("-:@_/")
"""Characters that may follow a table entry used as a prefix (so ``gpt-4`` never prices ``gpt-40``)."""

CNY_PER_USD = 7.1
"""Approximate exchange rate (2025-12) for showing costs in CNY; pass the day's rate when it matters."""


@dataclass(frozen=True, slots=True)
class Price:
    """List price of one model in USD per million tokens."""

    input_per_million: float
    output_per_million: float


@cache
def default_prices() -> Mapping[str, Price]:
    """The shipped table, keyed by lower-case model name."""
    text = resources.files("deepresearch.llm").joinpath("prices.toml").read_text(encoding="utf-8")
    models = tomllib.loads(text)["models"]
    return {
        name.lower(): Price(
            input_per_million=float(entry["input"]), output_per_million=float(entry["output"])
        )
        for name, entry in models.items()
    }


def price_for(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model``: exact name first, then the longest entry that prefixes it; else ``None``.

    ``overrides`` replace table entries of the same name and add new ones; matching runs over the
    merged table, so an override for ``gpt-4o`` does not capture ``gpt-4o-mini``, which has its own
    entry. A vendor prefix such as ``openai/`` is tried with and without.
    """
    table = dict(default_prices())
    if overrides:
        table.update({name.lower(): price for name, price in overrides.items()})
    name = model.strip().lower()
    candidates = [name, name.rsplit("/", 1)[1]] if "/" in name else [name]
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    for candidate in candidates:
        prefixes = [key for key in table if _is_prefix(key, candidate)]
        if prefixes:
            return table[max(prefixes, key=len)]
    return None


def _is_prefix(key: str, name: str) -> bool:
    return len(name) > len(key) and name.startswith(key) and name[len(key)] in _PREFIX_SEPARATORS


def cost_usd(usage: Usage, price: Price | None) -> float:
    """USD cost of ``usage`` at ``price``; 0.0 when the price is unknown."""
    if price is None:
        return 0.0
    return (
        usage.prompt_tokens * price.input_per_million + usage.completion_tokens * price.output_per_million
    ) / 1_000_000


def usd_to_cny(usd: float, rate: float = CNY_PER_USD) -> float:
    """``usd`` in CNY at ``rate`` (CNY per USD)."""
    return usd * rate


class _Listed(Protocol):
    input: float
    output: float


def overrides(prices: Mapping[str, _Listed]) -> dict[str, Price]:
    """``[prices]`` from the config (``Settings.prices``) as price-table entries, which win over the
    shipped table in ``price_for``."""
    return {name: Price(input_per_million=p.input, output_per_million=p.output) for name, p in prices.items()}
