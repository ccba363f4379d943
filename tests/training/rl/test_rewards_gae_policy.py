"""Rewards, GAE and the policy's distribution against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cappuccino.models.actor_critic import ActorCritic, gaussian_log_prob, tanh_log_det
from cappuccino.training.rl.gae import compute_gae
from cappuccino.training.rl.rewards import REWARDS, get_reward


def _t(x: list[float]) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_log_and_excess_rewards() -> None:
    state = torch.zeros(2, 2, dtype=torch.float64)
    r, _ = REWARDS["log_return"](_t([0.01, -0.02]), _t([0.005, 0.0]), state, 0.1)
    assert r.tolist() == [0.01, -0.02]
    r, _ = REWARDS["excess_log_return"](_t([0.01, -0.02]), _t([0.005, 0.01]), state, 0.1)
    assert r.tolist() == pytest.approx([0.005, -0.03])
    with pytest.raises(ValueError, match="expected one of"):
        get_reward("sharpe")


def test_differential_sharpe_by_hand() -> None:
    eta = 0.5
    lr = [math.log(1.1), math.log(0.95), math.log(1.02)]  # simple returns 0.1, -0.05, 0.02
    state = torch.zeros(1, 2, dtype=torch.float64)
    out = []
    for x in lr:
        d, state = REWARDS["differential_sharpe"](_t([x]), _t([0.0]), state, eta)
        out.append(d.item())
    # step 1: A=B=0 -> variance 0 -> D=0; A=0.05, B=0.005
    # step 2: R=-0.05, dA=-0.1, dB=0.0025-0.005=-0.0025, var=0.005-0.0025=0.0025
    #   D=(0.005*-0.1 - 0.5*0.05*-0.0025)/0.0025^1.5 = (-0.0005+0.0000625)/0.000125 = -3.5
    #   A=0.0, B=0.00375
    # step 3: R=0.02, dA=0.02, dB=0.0004-0.00375=-0.00335, var=0.00375
    #   D=(0.00375*0.02 - 0)/0.00375^1.5
    assert out[0] == 0.0
    assert out[1] == pytest.approx(-3.5)
    assert out[2] == pytest.approx(0.00375 * 0.02 / 0.00375**1.5)
    assert state[0].tolist() == pytest.approx([0.01, 0.00375 + 0.5 * -0.00335])


def test_gae_matches_the_hand_recursion() -> None:
    gamma, lam = 0.9, 0.8
    rewards = _t([1.0, 0.0, 2.0]).unsqueeze(1)
    values = _t([0.5, 0.4, 0.3]).unsqueeze(1)
    dones = _t([0.0, 1.0, 0.0]).unsqueeze(1)
    next_value = _t([0.7])
    adv, ret = compute_gae(rewards, values, dones, next_value, gamma=gamma, gae_lambda=lam)
    d2 = 2.0 + 0.9 * 0.7 - 0.3  # step 2 bootstraps from next_value
    d1 = 0.0 - 0.4  # episode ended at step 1
    d0 = 1.0 + 0.9 * 0.4 - 0.5
    a2 = d2
    a1 = d1
    a0 = d0 + gamma * lam * a1
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2])
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3])


def test_tanh_gaussian_log_prob_is_the_change_of_variables_density() -> None:
    # density of a = tanh(u) at a, numerically: p(a) = N(u) / (1 - a^2)
    u = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    mean = torch.tensor([[0.1, -0.5]], dtype=torch.float64)
    log_std = torch.tensor([-0.2, 0.3], dtype=torch.float64)
    a = torch.tanh(u)
    ref = 0.0
    for i in range(2):
        s = math.exp(log_std[i].item())
        n = math.exp(-0.5 * ((u[0, i].item() - mean[0, i].item()) / s) ** 2) / (
            s * math.sqrt(2 * math.pi)
        )
        ref += math.log(n / (1 - a[0, i].item() ** 2))
    got = gaussian_log_prob(u, mean, log_std) - tanh_log_det(u)
    assert got.item() == pytest.approx(ref, rel=1e-10)
    # and the policy uses exactly this density for its actions
    pol = ActorCritic(obs_dim=1, action_dim=2).double()
    with torch.no_grad():
        pol.log_std.copy_(log_std)
    assert pol.log_prob(u, mean).item() == pytest.approx(ref, rel=1e-10)
    pol.action_dist = "clipped_gaussian"
    assert pol.log_prob(u, mean).item() == pytest.approx(gaussian_log_prob(u, mean, log_std).item())
    assert tanh_log_det(torch.tensor([[40.0]], dtype=torch.float64)).isfinite().all()


def test_policy_entropy_estimates_the_squashed_distribution() -> None:
    torch.manual_seed(0)
    pol = ActorCritic(obs_dim=3, action_dim=1, hidden_sizes=[8], log_std_init=0.0).double()
    obs = torch.zeros(200_000, 3, dtype=torch.float64)
    mean = pol.actor(obs[:1]).item()
    _, entropy, _ = pol.evaluate(obs, torch.zeros(200_000, 1, dtype=torch.float64))
    # reference: -E[log p(a)] by Monte Carlo over a = tanh(u), u ~ N(mean, 1)
    u = mean + torch.randn(400_000, dtype=torch.float64)
    logp = -0.5 * (u - mean) ** 2 - 0.5 * math.log(2 * math.pi) - torch.log1p(-(torch.tanh(u) ** 2))
    assert entropy.mean().item() == pytest.approx(-logp.mean().item(), abs=0.01)
    # and it is below the unsquashed Gaussian's entropy, as squashing into [-1, 1] must be
    assert entropy.mean().item() < 0.5 * math.log(2 * math.pi * math.e)
    clipped = ActorCritic(
        obs_dim=3, action_dim=2, action_dist="clipped_gaussian", log_std_init=-1.0
    )
    _, ent, _ = clipped.evaluate(torch.zeros(4, 3), torch.zeros(4, 2))
    assert ent.tolist() == pytest.approx([2 * (0.5 * math.log(2 * math.pi * math.e) - 1.0)] * 4)


def test_actions_stay_inside_the_box() -> None:
    pol = ActorCritic(obs_dim=3, action_dim=4, log_std_init=2.0)
    for dist in ("tanh_gaussian", "clipped_gaussian"):
        pol.action_dist = dist
        a = pol.sample(torch.randn(1000, 3)).action
        assert a.abs().max().item() <= 1.0
    assert np.isfinite(pol.act(torch.randn(5, 3)).numpy()).all()
