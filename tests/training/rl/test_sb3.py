"""SB3 algorithms train on the batched env through the bridge."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from cappuccino.training.rl.sb3 import SB3VecEnv

from .helpers import make_env, random_market


def _venv(n: int = 4) -> SB3VecEnv:
    return SB3VecEnv(make_env(random_market(t=150, a=3), n_envs=n, episode_bars=8, lookback=2))


def test_bridge_steps_all_envs_and_marks_time_limits() -> None:
    venv = _venv()
    assert isinstance(venv, VecEnv)
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (4, venv.observation_space.shape[0])
    for _ in range(8):
        obs, rewards, dones, infos = venv.step(np.zeros((4, 3), dtype=np.float32))
    assert dones.all() and rewards.shape == (4,)
    assert all(i["TimeLimit.truncated"] for i in infos)
    assert infos[0]["terminal_observation"].shape == obs.shape[1:]
    assert venv.env_is_wrapped(object) == [False] * 4


@pytest.mark.parametrize("algo", [PPO, A2C, SAC, TD3])
def test_sb3_algorithms_train(algo: type) -> None:
    venv = _venv()
    kw = {"n_steps": 16} if algo in (PPO, A2C) else {"learning_starts": 16, "buffer_size": 500}
    if algo is PPO:
        kw["batch_size"] = 32
    model = algo("MlpPolicy", venv, seed=0, device="cpu", **kw)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=96)
    after = list(model.policy.parameters())
    assert any(
        not np.allclose(b.numpy(), a.detach().numpy()) for b, a in zip(before, after, strict=True)
    )
    assert model.num_timesteps >= 96
