"""The batched multi-agent view of the trading env: per-symbol agents and a portfolio master
over the one simulator (:class:`~cappuccino.training.rl.env.BatchedTradingEnv`).

- Observations are the single-agent flat observation ``(E, D)`` plus the portfolio
  telemetry ``(E, 7)``; the per-symbol observations ``(E, A, d_local)``, the master's
  ``(E, d_master)`` and the global state ``(E, d_state)`` are read off them by
  :class:`~cappuccino.market.multiagent.MultiAgentSpec` (the layout the backtest and paper
  policy use too).
- Actions: the symbol agents' scores ``(E, A)`` and, unless the master is fixed, its
  action ``(E, 1 + A)``; :func:`~cappuccino.market.decode_scores` turns them into target
  units under the master's limits, enforced by the market's own risk-limit rule, and the
  base env trades them (fills, fees, autoreset) exactly as the single-agent env does.
- Rewards: the symbol agents share the base env's reward (the portfolio log return by
  default: the cooperative reward); the master's is the weighted sum of
  :func:`~cappuccino.training.rl.rewards.master_reward_terms`, whose terms come back
  separately for logging.

With the master fixed, one symbol, and the same actions, rewards and fills equal the
single-agent env's bit for bit (the same functions run on the same tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cappuccino.config.rl import MasterRewardSettings
from cappuccino.market import MarketRules, decode_scores
from cappuccino.market.multiagent import MultiAgentSpec
from cappuccino.training.rl.env import BatchedTradingEnv, StepInfo
from cappuccino.training.rl.rewards import differential_sharpe, log_drawdown, master_reward_terms


@dataclass(frozen=True)
class MultiAgentStep:
    """One step's outputs, ``(E,)`` unless stated."""

    obs: Tensor  # (E, D) flat observations after the step (after any reset)
    telemetry: Tensor  # (E, 7) telemetry of the same states
    reward: Tensor  # float32 shared reward of the symbol agents
    master_reward: Tensor  # float32 composite reward of the master
    master_terms: Tensor  # (E, 4) float64 its terms (rewards.MASTER_TERMS)
    terminated: Tensor
    truncated: Tensor
    info: StepInfo


class MultiAgentTradingEnv:
    """Symbol agents and a master over ``base`` (``target_weights`` action mode); see the
    module docstring. ``master_reward`` weighs the master's reward terms."""

    def __init__(
        self, base: BatchedTradingEnv, *, master_reward: MasterRewardSettings | None = None
    ) -> None:
        if base.settings.action_mode != "target_weights":
            raise ValueError(
                f"env.action_mode: got {base.settings.action_mode!r}, multi-agent scores are "
                "target weights (expected 'target_weights')"
            )
        self.base = base
        self.spec = MultiAgentSpec(base.spec)
        self.n_envs, self.n_symbols, self.device = base.n_envs, base.n_assets, base.device
        r = master_reward or MasterRewardSettings()
        self.sharpe_clip = r.sharpe_clip
        self.master_weights = torch.tensor(
            [r.sharpe, r.log_return, r.drawdown, r.diversification],
            dtype=torch.float64,
            device=self.device,
        )
        self.reset()

    @property
    def rules(self) -> MarketRules:
        return self.base.rules

    def reset(self, *, seed: int | None = None, starts: Tensor | None = None) -> Tensor:
        """Reset every env; returns the flat observations ``(E, D)``."""
        obs = self.base.reset(seed=seed, starts=starts)
        self.peak = self.base.equity.clone()
        self.dsr_state = torch.zeros((self.n_envs, 2), dtype=torch.float64, device=self.device)
        return obs

    def telemetry(self) -> Tensor:
        """``(E, 7)`` telemetry of the current states."""
        b, pf = self.base, self.base.portfolio
        return self.spec.telemetry(b.close, b.t, pf.cash, pf.units, b.equity)

    def telemetry_of(self, t: Tensor, cash: Tensor, units: Tensor, equity: Tensor) -> Tensor:
        """Telemetry ``(N, 7)`` of arbitrary states (e.g. the final states of finished
        episodes, to bootstrap their values)."""
        return self.spec.telemetry(self.base.close, t, cash, units, equity)

    def target_units(self, scores: Tensor, master: Tensor | None) -> Tensor:
        """Target units ``(E, A)`` for the current states."""
        pf = self.base.portfolio
        return decode_scores(
            scores.to(self.device), cash=pf.cash, units=pf.units, price=self.base.fill_price,
            rules=self.base.rules, master=None if master is None else master.to(self.device),
        )  # fmt: skip

    def step(
        self, scores: Tensor, master: Tensor | None = None, *, obs_out: Tensor | None = None
    ) -> MultiAgentStep:
        """Trade the symbol agents' ``scores`` ``(E, A)`` under the master's action
        ``(E, 1 + A)`` (None: fixed at multiplier 1, no caps) and advance one bar."""
        b = self.base
        equity0 = b.equity
        obs, reward, terminated, truncated, info = b.step_targets(
            self.target_units(scores, master), obs_out=obs_out
        )
        eq1 = info.equity
        peak1 = torch.maximum(self.peak, eq1)
        pf1 = info.fill.portfolio
        weights = pf1.units * b.close[info.t_end] / eq1.unsqueeze(1)
        dsr, dsr_state = differential_sharpe(
            info.log_return, info.log_return, self.dsr_state, b.settings.dsr_eta
        )
        terms = master_reward_terms(
            info.log_return, dsr, log_drawdown(equity0, self.peak), log_drawdown(eq1, peak1),
            weights, b.settings.reward_scale, self.sharpe_clip,
        )  # fmt: skip
        done = terminated | truncated
        self.peak = torch.where(done, b.equity, peak1)
        self.dsr_state = torch.where(done.unsqueeze(1), torch.zeros_like(dsr_state), dsr_state)
        return MultiAgentStep(
            obs=obs,
            telemetry=self.telemetry(),
            reward=reward,
            master_reward=(terms @ self.master_weights).to(torch.float32),
            master_terms=terms,
            terminated=terminated,
            truncated=truncated,
            info=info,
        )
