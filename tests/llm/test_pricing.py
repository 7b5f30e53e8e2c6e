"""Prices: the shipped table, prefix matching, overrides, and cost."""

from __future__ import annotations

import pytest

from deepresearch.llm.messages import Usage
from deepresearch.llm.pricing import Price, cost_usd, default_prices, price_for, usd_to_cny


def test_table_has_the_documented_models() -> None:
    table = default_prices()
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "deepseek-chat", "deepseek-reasoner"):
        price = table[model]
        assert 0 < price.input_per_million <= price.output_per_million


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4.1", "gpt-4.1"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("deepseek-reasoner", "deepseek-reasoner"),
    ],
)
def test_exact_then_longest_prefix(model: str, entry: str) -> None:
    assert price_for(model) == default_prices()[entry]


@pytest.mark.parametrize("model", ["my-local-model", "gpt-4omni", "gpt-4", "Qwen/Qwen3-8B", ""])
def test_unknown_models_have_no_price(model: str) -> None:
    assert price_for(model) is None


def test_overrides_win_and_extend() -> None:
    mine = Price(input_per_million=1.0, output_per_million=2.0)
    local = Price(input_per_million=0.0, output_per_million=0.0)
    overrides = {"gpt-4o": mine, "Qwen/Qwen3-8B": local}

    assert price_for("gpt-4o", overrides) == mine
    assert price_for("gpt-4o-2024-11-20", overrides) == mine
    assert price_for("gpt-4o-mini", overrides) == default_prices()["gpt-4o-mini"]  # has its own entry
    assert price_for("qwen/qwen3-8b", overrides) == local
    assert price_for("gpt-4o") == default_prices()["gpt-4o"]  # the table itself is untouched


def test_cost() -> None:
    usage = Usage(prompt_tokens=2_000_000, completion_tokens=500_000)
    price = Price(input_per_million=0.25, output_per_million=2.0)

    assert cost_usd(usage, price) == pytest.approx(0.5 + 1.0)
    assert cost_usd(usage, None) == 0.0
    assert usd_to_cny(2.0, rate=7.0) == pytest.approx(14.0)
