"""torch.compile paths give the eager results (slow: compilation takes tens of seconds)."""

from __future__ import annotations

import pytest
import torch

from cappuccino.config.rl import PPOSettings
from cappuccino.training.rl.ppo import train_ppo

from .helpers import make_env, random_market

pytestmark = pytest.mark.slow


def test_compiled_env_matches_eager() -> None:
    data = random_market(t=200, a=3)
    eager = make_env(data, n_envs=8, episode_bars=10)
    compiled = make_env(data, n_envs=8, episode_bars=10, compile=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        a = torch.rand(8, 3, generator=g) * 2 - 1
        oe, re, _, te, ie = eager.step(a)
        oc, rc, _, tc, ic = compiled.step(a)
        assert torch.equal(te, tc)
        assert torch.allclose(oe, oc, atol=1e-6) and torch.allclose(re, rc, atol=1e-6)
        assert torch.allclose(ie.fill.fees, ic.fill.fees, rtol=1e-9, atol=1e-9)


def test_compiled_ppo_trains_like_eager() -> None:
    kw = {"total_timesteps": 256, "n_envs": 4, "n_steps": 32, "minibatch_size": 32, "n_epochs": 2}
    runs = []
    for comp in (False, True):
        env = make_env(random_market(t=120, a=3), n_envs=4, episode_bars=10)
        runs.append(train_ppo(env, PPOSettings(**kw), seed=0, compile=comp))
    for a, b in zip(runs[0].policy.parameters(), runs[1].policy.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
