"""stable-baselines3 bridge: one ``VecEnv`` over the batched env (no per-env wrappers).

SB3's algorithms (PPO, A2C, SAC, TD3) train on it directly. Finished envs carry
``info["terminal_observation"]`` and ``info["TimeLimit.truncated"]`` (our episodes end
by time limit, so SB3 bootstraps their value, as our PPO does). Requires the ``sb3``
extra: ``pip install 'cappuccino[sb3]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.gym import _spaces

try:
    from stable_baselines3.common.vec_env.base_vec_env import (
        VecEnv,
        VecEnvIndices,
        VecEnvObs,
        VecEnvStepReturn,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the SB3 bridge needs stable-baselines3: pip install 'cappuccino[sb3]'"
    ) from exc


class SB3VecEnv(VecEnv):
    """All ``env.n_envs`` portfolios as one SB3 ``VecEnv`` (numpy at the boundary)."""

    def __init__(self, env: BatchedTradingEnv) -> None:
        if not env.autoreset:
            raise ValueError("SB3VecEnv: the batched env must have autoreset=True")
        self.env = env
        obs_space, act_space = _spaces(env)
        super().__init__(env.n_envs, obs_space, act_space)
        self._actions: torch.Tensor | None = None

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds else None
        obs = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = torch.as_tensor(actions, device=self.env.device)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait called before step_async")
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        done = (terminated | truncated).cpu().numpy()
        trunc = (truncated & ~terminated).cpu().numpy()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            final = info.final_obs.cpu().numpy()
            for i in np.flatnonzero(done):
                infos[i] = {"terminal_observation": final[i], "TimeLimit.truncated": bool(trunc[i])}
        return obs.cpu().numpy(), reward.cpu().numpy(), done, infos

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = None if attr_name == "render_mode" else getattr(self.env, attr_name)
        return [value] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError("SB3VecEnv: the batched env's attributes are shared; set them on .env")

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        raise AttributeError("SB3VecEnv: per-env methods do not exist on a batched env")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)
