"""A PettingZoo ``ParallelEnv`` over one multi-agent trading env, for compatibility with
multi-agent libraries (training here uses the batched tensors of
:class:`~cappuccino.training.rl.multiagent.MultiAgentTradingEnv`, never this adapter).

Agents: one per symbol (named by the symbol) and, unless the master is fixed, ``"master"``.

- A symbol agent observes its local observation (``d_local`` floats) and acts with one
  score in ``[-1, 1]``; the master observes the master observation and acts with
  ``1 + n_symbols`` values in ``[-1, 1]`` (multiplier, caps).
- Every agent acts at once, so the master's observation carries the intents of the
  scores submitted at the previous step (at reset, the all-cash scores ``-1`` that match
  the all-cash portfolio); in the batched env it sees the scores of the same step. This
  is the one difference, and it is why this adapter is not used for training.
- Rewards: the shared portfolio reward for symbol agents, the composite reward for the
  master. Episodes end by time limit: every agent is truncated at once.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from cappuccino.training.rl.multiagent import MultiAgentTradingEnv

MASTER = "master"


class MultiAgentParallelEnv(ParallelEnv):  # type: ignore[misc]
    """``env`` (one env, ``autoreset`` off) as a parallel env; ``master`` False fixes the
    master at multiplier 1 and no caps (the ``symbols`` stage)."""

    metadata: ClassVar[dict[str, Any]] = {"name": "cappuccino_multiagent_v0", "render_modes": []}

    def __init__(self, env: MultiAgentTradingEnv, *, master: bool = True) -> None:
        if env.n_envs != 1 or env.base.autoreset:
            raise ValueError("MultiAgentParallelEnv: expected one env with autoreset off")
        self.env = env
        self.symbols = list(env.base.data.symbols)
        self.use_master = master
        self.possible_agents = [*self.symbols, *([MASTER] if master else [])]
        self.agents: list[str] = []
        self._scores = torch.full((1, env.n_symbols), -1.0, device=env.device)
        self._obs = torch.zeros((1, env.spec.base.dim), device=env.device)
        self._tel = torch.zeros((1, env.spec.d_telemetry), device=env.device)

    @cache  # noqa: B019 (one space object per agent, as PettingZoo asks)
    def observation_space(self, agent: str) -> spaces.Box:
        n = self.env.spec.d_master if agent == MASTER else self.env.spec.d_local
        return spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)

    @cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Box:
        n = 1 + self.env.n_symbols if agent == MASTER else 1
        return spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)

    def _observations(self) -> dict[str, npt.NDArray[np.float32]]:
        spec = self.env.spec
        local = spec.local(self._obs)[0].cpu().numpy()
        out = {s: local[i].astype(np.float32) for i, s in enumerate(self.symbols)}
        if self.use_master:
            out[MASTER] = spec.master(self._tel, self._scores)[0].cpu().numpy().astype(np.float32)
        return out

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, dict[str, Any]]]:  # fmt: skip
        self._obs = self.env.reset(seed=seed)
        self._tel = self.env.telemetry()
        self._scores = torch.full_like(self._scores, -1.0)
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[
        dict[str, npt.NDArray[np.float32]], dict[str, float], dict[str, bool], dict[str, bool],
        dict[str, dict[str, Any]],
    ]:  # fmt: skip
        dev = self.env.device
        scores = torch.tensor(
            [[float(np.asarray(actions[s]).reshape(-1)[0]) for s in self.symbols]], device=dev
        ).clamp(-1.0, 1.0)
        master = None
        if self.use_master:
            master = torch.as_tensor(
                np.asarray(actions[MASTER], dtype=np.float32).reshape(1, -1), device=dev
            ).clamp(-1.0, 1.0)
        st = self.env.step(scores, master)
        self._obs, self._tel, self._scores = st.obs, st.telemetry, scores
        done = bool(st.truncated[0] | st.terminated[0])
        agents = list(self.agents)
        rewards = {a: float(st.master_reward[0] if a == MASTER else st.reward[0]) for a in agents}
        infos = {a: {"log_return": float(st.info.log_return[0])} for a in agents}
        obs = self._observations()
        if done:
            self.agents = []
        return (obs, rewards, {a: False for a in agents}, {a: done for a in agents}, infos)
