"""Run budgets: steps, tokens, dollars and wall-clock time, checked before every model call.

Running out never ends a run silently: the loop turns an exhausted budget into one forced
final-answer turn, so every run delivers a report.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepresearch.llm.messages import Usage


@dataclass(frozen=True, slots=True)
class Budget:
    max_steps: int = 30
    """Model calls that may request tools; the forced final answer comes after them."""
    max_total_tokens: int | None = None
    """Prompt plus completion tokens over all calls."""
    max_cost_usd: float | None = None
    """Spend over all calls, from the price table."""
    max_wall_seconds: float | None = None
    """Elapsed time, counting earlier sessions of a resumed run."""

    def exhausted(self, *, next_step: int, usage: Usage, elapsed: float) -> str | None:
        """The name of the first budget that is used up before ``next_step``, or ``None``."""
        if next_step > self.max_steps:
            return "max_steps"
        if self.max_total_tokens is not None and usage.total_tokens >= self.max_total_tokens:
            return "max_total_tokens"
        if self.max_cost_usd is not None and usage.cost_usd >= self.max_cost_usd:
            return "max_cost"
        if self.max_wall_seconds is not None and elapsed >= self.max_wall_seconds:
            return "max_wall_time"
        return None
