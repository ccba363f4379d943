"""MAPPO learns what a synthetic market rewards: the symbol agents hold the one trending
symbol, and the master cuts exposure in a high-volatility regime that loses money.

Both markets are built here; the budgets are the smallest that pass with a margin on CPU
(about 20 s and 11 s on two cores), at a short discount (gamma 0.5: a bar's decision earns
that bar's return)."""

from __future__ import annotations

import math

import numpy as np
import torch

from cappuccino.config.rl import MAPPOSettings, MasterRewardSettings, PPOSettings
from cappuccino.evaluation.backtest import run_backtest
from cappuccino.market import MarketRules
from cappuccino.policies import MultiAgentPolicy
from cappuccino.training.rl.mappo import build_multiagent, train_mappo
from cappuccino.training.rl.multiagent import MultiAgentTradingEnv

from .helpers import make_env, market

RULES = MarketRules(buy_fee_rate=0.001, sell_fee_rate=0.001, min_order_notional=0.0)
N_ENVS, N_STEPS = 16, 64


def _market(log_returns: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(log_returns, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])  # no gaps: each bar opens at the last close
    feats = np.stack([log_returns, rng.normal(size=log_returns.shape)], axis=2)
    return market(open_, close, feats)


def _ppo(updates: int) -> PPOSettings:
    return PPOSettings(n_envs=N_ENVS, n_steps=N_STEPS, minibatch_size=256, n_epochs=4,
                       total_timesteps=N_ENVS * N_STEPS * updates, learning_rate=3e-3,
                       gamma=0.5, gae_lambda=0.9)  # fmt: skip


def test_symbol_agents_learn_to_hold_the_trending_symbol() -> None:
    rng = np.random.default_rng(0)
    t, a = 800, 3
    lr = rng.normal(0.0, 0.005, size=(t, a))  # noise: no drift
    lr[:, 0] = 0.003 + rng.normal(0.0, 0.001, t)  # the trend: +0.3 % a bar
    data = _market(lr, 0)
    base = make_env(data, N_ENVS, rules=RULES, lookback=2, episode_bars=64, reward_scale=100.0)
    env = MultiAgentTradingEnv(base)
    ppo, mappo = _ppo(60), MAPPOSettings(actor_hidden=[32], critic_hidden=[32])
    torch.manual_seed(0)
    policy = build_multiagent(env, ppo, mappo, {"source": "mlp", "hidden": [32]})
    train_mappo(env, ppo, mappo, seed=0, policy=policy)
    agent = MultiAgentPolicy(policy, settings=base.settings, scaler=base.scaler, rules=RULES,
                             use_master=False)  # fmt: skip
    first = 100
    bt = run_backtest(data, agent, rules=RULES, first=first)
    growth = math.log(bt.equity[-1] / bt.equity[0])
    # the optimum: all in the trending symbol from the first fill, one buy fee
    optimal = math.log(data.close[-1, 0] / data.open[first + 1, 0]) + math.log(1 - 0.001)
    assert growth >= 0.9 * optimal, (growth, optimal, bt.weights[-50:].mean(0))
    # an equal-weight start would earn about a third of it: the agents did learn
    assert bt.weights[1:, 0].mean() > 0.85


def test_the_master_learns_to_cut_exposure_in_a_high_volatility_regime() -> None:
    rng = np.random.default_rng(0)
    t, a, block = 1200, 3, 48
    storm = (np.arange(t) // block) % 2 == 1  # alternating 48-bar regimes
    lr = np.where(storm[:, None], rng.normal(-0.01, 0.03, (t, a)), rng.normal(0.001, 0.003, (t, a)))
    data = _market(lr, 1)
    base = make_env(data, N_ENVS, rules=RULES, lookback=6, episode_bars=96, reward_scale=100.0)
    env = MultiAgentTradingEnv(base, master_reward=MasterRewardSettings())  # 0.4/0.3/0.2/0.1
    ppo = _ppo(40)
    mappo = MAPPOSettings(stage="master", parent="symbols-stage", actor_hidden=[16],
                          critic_hidden=[32], master={"hidden": [32], "learning_rate": 3e-3})  # fmt: skip
    torch.manual_seed(0)
    policy = build_multiagent(env, ppo, mappo, {"source": "mlp", "hidden": [16]})
    with torch.no_grad():  # fixed symbol agents asking for equal weight (score 2 / n - 1)
        head = policy.actor.net[-1]
        head.weight.zero_()  # type: ignore[operator]
        head.bias.fill_(math.atanh(2 / a - 1))  # type: ignore[operator]
    train_mappo(env, ppo, mappo, seed=0, policy=policy)
    agent = MultiAgentPolicy(policy, settings=base.settings, scaler=base.scaler, rules=RULES,
                             use_master=True)  # fmt: skip
    first = 10
    bt = run_backtest(data, agent, rules=RULES, first=first)
    gross = bt.weights[1:].sum(1)  # invested share at the close of bars first + 1 ..
    bars = np.arange(first + 1, t)
    settled = (bars % block) >= 8  # the telemetry's 6-bar window has seen the regime
    in_storm = gross[storm[bars] & settled].mean()
    in_calm = gross[~storm[bars] & settled].mean()
    assert in_storm < 0.5 and in_calm > 0.85, (in_storm, in_calm)
