"""The advantage math the RL recipes rely on: GAE with γ = λ = 1 and one terminal reward is R − V(s_t);
GAE in general matches a hand computation; environment tokens get none; GRPO's group advantages are
TRL's."""

from __future__ import annotations

import pytest

from deepresearch.train.advantages import gae, group_advantages, policy_token_advantages, terminal_rewards


def test_terminal_reward_with_gamma_and_lambda_one_is_the_reward_less_the_value() -> None:
    values = [0.2, -0.5, 0.9, 0.0, 0.35]
    reward = 0.75
    advantages = gae(terminal_rewards(len(values), reward), values, gamma=1.0, lam=1.0)
    assert advantages == pytest.approx([reward - value for value in values], abs=1e-12)


def test_gae_matches_a_hand_computation() -> None:
    rewards, values, gamma, lam = [0.0, 1.0, 2.0], [0.5, 0.25, 1.0], 0.9, 0.8
    # deltas: r_t + γ V(t+1) − V(t), with V(3) = 0
    d2 = 2.0 + 0.0 - 1.0  # 1.0
    d1 = 1.0 + 0.9 * 1.0 - 0.25  # 1.65
    d0 = 0.0 + 0.9 * 0.25 - 0.5  # -0.275
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    assert gae(rewards, values, gamma=gamma, lam=lam) == pytest.approx([a0, a1, a2], abs=1e-12)
    # λ = 0 is the one-step TD error; λ = 1, γ = 1 is the return less the value
    assert gae(rewards, values, gamma=gamma, lam=0.0) == pytest.approx([d0, d1, d2], abs=1e-12)
    assert gae(rewards, values) == pytest.approx([3.0 - 0.5, 3.0 - 0.25, 2.0 - 1.0], abs=1e-12)


def test_environment_tokens_carry_no_advantage() -> None:
    mask = [1, 1, 0, 0, 0, 1, 1, 0]
    values = [0.1, 0.2, 0.3, 0.4]  # at the four policy tokens
    out = policy_token_advantages(1.0, values, mask)
    assert out == pytest.approx([0.9, 0.8, 0.0, 0.0, 0.0, 0.7, 0.6, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="4 policy tokens but 3 values"):
        policy_token_advantages(1.0, values[:3], mask)
    with pytest.raises(ValueError):
        gae([1.0], [0.0, 0.0])


def test_group_advantages_are_trls() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    from trl.trainer.utils import nanstd

    rewards = [0.5, -0.25, 1.0, 1.0, 0.0, 0.0, 0.3, 0.9]
    tensor = torch.tensor(rewards, dtype=torch.float64)
    grouped = tensor.view(-1, 4)
    mean = grouped.mean(dim=1).repeat_interleave(4)
    std = nanstd(grouped, dim=1).repeat_interleave(4)
    expected = ((tensor - mean) / (std + 1e-4)).tolist()
    assert group_advantages(rewards, 4) == pytest.approx(expected, rel=1e-7)
    assert group_advantages(rewards, 4, scale=False) == pytest.approx((tensor - mean).tolist(), abs=1e-12)
    assert group_advantages([0.4, 0.4], 2) == [0.0, 0.0]  # a group that agrees teaches nothing
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)
