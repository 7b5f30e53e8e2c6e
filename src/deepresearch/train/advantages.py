"""The advantage estimates the RL recipes rely on, in plain Python so they can be checked by hand.

PPO (verl's recipe) uses GAE over the policy's own tokens:
``δ_t = r_t + γ·V(s_{t+1}) − V(s_t)`` and ``A_t = Σ_l (γλ)^l · δ_{t+l}``. The report trains with
γ = λ = 1 and a single terminal reward R (the judge's, after the last token), so the sum telescopes:
``A_t = R − V(s_t)``: every token is credited with the whole outcome, less the critic's guess from
where it stood. GRPO (TRL's recipe on one machine) drops the critic and takes the group's mean reward
as the baseline: ``A_i = (R_i − mean_group) / (std_group + ε)``, the same for every token of rollout i.

``gae`` is computed over the policy's tokens only: tool results are not actions, so they carry no
value estimate and no advantage (they are out of the loss, as ``env_mask`` says).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

EPSILON = 1e-4
"""What TRL adds to the group's standard deviation before dividing."""


def gae(
    rewards: Sequence[float], values: Sequence[float], *, gamma: float = 1.0, lam: float = 1.0
) -> list[float]:
    """Generalised advantage estimates of one trajectory (``values[t]`` = V(s_t); after the last
    step the value is 0: the episode has ended)."""
    if len(rewards) != len(values):
        raise ValueError(f"{len(rewards)} rewards but {len(values)} values")
    advantages = [0.0] * len(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        following = values[t + 1] if t + 1 < len(values) else 0.0
        delta = rewards[t] + gamma * following - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages


def terminal_rewards(length: int, reward: float) -> list[float]:
    """Per-token rewards of a trajectory whose only reward comes after its last token."""
    if length < 1:
        raise ValueError("a trajectory has at least one token")
    return [0.0] * (length - 1) + [reward]


def policy_token_advantages(
    reward: float, values: Sequence[float], env_mask: Sequence[int], *, gamma: float = 1.0, lam: float = 1.0
) -> list[float]:
    """GAE for a multi-turn trajectory: the steps are the tokens with ``env_mask`` 1 (``values`` holds
    V at those tokens), the terminal reward follows the last of them; environment tokens get 0."""
    steps = [index for index, flag in enumerate(env_mask) if flag]
    if len(values) != len(steps):
        raise ValueError(f"{len(steps)} policy tokens but {len(values)} values")
    estimates = gae(terminal_rewards(len(steps), reward), values, gamma=gamma, lam=lam) if steps else []
    out = [0.0] * len(env_mask)
    for index, estimate in zip(steps, estimates, strict=True):
        out[index] = estimate
    return out


def group_advantages(rewards: Sequence[float], group_size: int, *, scale: bool = True) -> list[float]:
    """GRPO's advantages: each reward less its group's mean (consecutive groups of ``group_size``),
    divided by the group's sample standard deviation + ``EPSILON`` when ``scale``."""
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    out: list[float] = []
    for start in range(0, len(rewards), group_size):
        group = list(rewards[start : start + group_size])
        mean = sum(group) / len(group)
        std = (
            math.sqrt(sum((value - mean) ** 2 for value in group) / (len(group) - 1))
            if len(group) > 1
            else 0.0
        )
        out += [(value - mean) / (std + EPSILON) if scale else value - mean for value in group]
    return out
