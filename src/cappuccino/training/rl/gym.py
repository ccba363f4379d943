"""Gymnasium faces of :class:`~cappuccino.training.rl.env.BatchedTradingEnv`.

- :class:`TradingVectorEnv`: a ``gymnasium.vector.VectorEnv`` over the batched env
  (numpy in and out, same-step autoreset, ``info["final_obs"]`` for finished envs).
- :class:`TradingEnv`: one portfolio as a ``gymnasium.Env`` (passes
  ``gymnasium.utils.env_checker.check_env``); the caller resets after an episode ends.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cappuccino.training.rl.env import BatchedTradingEnv

F32 = npt.NDArray[np.float32]


def _spaces(env: BatchedTradingEnv) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    bound = max(1.0, env.settings.obs_clip)  # weights lie in [0, 1], features in +-obs_clip
    obs = gym.spaces.Box(-bound, bound, shape=(env.obs_dim,), dtype=np.float32)
    act = gym.spaces.Box(-1.0, 1.0, shape=(env.n_assets,), dtype=np.float32)
    return obs, act


class TradingVectorEnv(VectorEnv[F32, F32, F32]):
    """``gymnasium.vector.VectorEnv`` over a batched env (all envs step as one batch)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, env: BatchedTradingEnv) -> None:
        if not env.autoreset:
            raise ValueError("TradingVectorEnv: the batched env must have autoreset=True")
        self.env = env
        self.num_envs = env.n_envs
        self.single_observation_space, self.single_action_space = _spaces(env)
        self.observation_space = batch_space(self.single_observation_space, env.n_envs)
        self.action_space = batch_space(self.single_action_space, env.n_envs)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[F32, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        obs = self.env.reset(seed=seed)
        return obs.cpu().numpy(), {}

    def step(self, actions: F32) -> tuple[F32, Any, Any, Any, dict[str, Any]]:
        a = torch.as_tensor(np.asarray(actions), device=self.env.device)
        obs, reward, terminated, truncated, info = self.env.step(a)
        done = (terminated | truncated).cpu().numpy()
        infos: dict[str, Any] = {}
        if done.any():
            infos["final_obs"] = np.where(
                done[:, None], info.final_obs.cpu().numpy(), np.zeros_like(obs.cpu().numpy())
            ).astype(np.float32)
            infos["_final_obs"] = done
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy().astype(np.float64),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            infos,
        )


class TradingEnv(gym.Env[F32, F32]):
    """One portfolio; ``reset(seed=s)`` draws the episode start from the env's generator."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, env: BatchedTradingEnv) -> None:
        if env.n_envs != 1 or env.autoreset:
            raise ValueError("TradingEnv: expected a batched env with n_envs=1, autoreset=False")
        self.env = env
        obs_space, act_space = _spaces(env)
        self.observation_space: gym.spaces.Box = obs_space  # type: ignore[assignment]
        self.action_space: gym.spaces.Box = act_space  # type: ignore[assignment]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[F32, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        return self.env.reset(seed=seed)[0].cpu().numpy(), {}

    def step(self, action: F32) -> tuple[F32, float, bool, bool, dict[str, Any]]:
        a = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.env.device)
        obs, reward, terminated, truncated, info = self.env.step(a.reshape(1, -1))
        return (
            obs[0].cpu().numpy(),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {"equity": float(info.equity[0]), "log_return": float(info.log_return[0])},
        )
