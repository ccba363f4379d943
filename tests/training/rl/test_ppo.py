"""PPO: determinism, every hyperparameter used, learning on a known task, bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from cappuccino.bundles.rl import load_bundle, save_bundle
from cappuccino.config.rl import EnvSettings, FTPolicySettings, PPOSettings
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import build_market_arrays, fit_scaler
from cappuccino.market import MarketRules
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.ppo import PPOResult, train_ppo

from .helpers import make_env, market, period_of, random_market

TINY: dict[str, Any] = {
    "total_timesteps": 128,
    "n_envs": 4,
    "n_steps": 16,
    "n_epochs": 2,
    "minibatch_size": 16,
    "learning_rate": 1e-2,
}


def _train(**overrides: Any) -> PPOResult:
    settings = PPOSettings(**{**TINY, **overrides})
    env = make_env(random_market(t=120, a=3), n_envs=settings.n_envs, episode_bars=10, lookback=2)
    return train_ppo(env, settings, seed=0)


def _same(a: PPOResult, b: PPOResult) -> bool:
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def test_same_seed_same_result_on_cpu() -> None:
    a, b = _train(), _train()
    assert _same(a, b)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b.history]
    env = make_env(random_market(t=120, a=3), n_envs=4, episode_bars=10, lookback=2)
    c = train_ppo(env, PPOSettings(**TINY), seed=1)
    assert not _same(a, c)


CHANGES: dict[str, Any] = {
    "total_timesteps": 192,
    "n_envs": 8,
    "n_steps": 8,
    "n_epochs": 3,
    "minibatch_size": 32,
    "learning_rate": 3e-3,
    "lr_schedule": "constant",
    "adam_eps": 0.1,
    "gamma": 0.5,
    "gae_lambda": 0.5,
    "clip_coef": 0.01,
    "clip_value": 0.001,
    "vf_coef": 5.0,
    "ent_coef": 0.5,
    "max_grad_norm": 100.0,
    "norm_adv": False,
    "target_kl": 1e-9,
    "hidden_sizes": [32],
    "activation": "relu",
    "log_std_init": 0.0,
    "action_dist": "clipped_gaussian",
    "ft": {"d_token": 8, "n_heads": 2, "d_out": 8},
}


def test_every_hyperparameter_changes_training() -> None:
    fields = set(PPOSettings.model_fields) - {"device"}
    assert fields == set(CHANGES), "a new PPO setting needs a change here"
    base = _train()
    for name, value in CHANGES.items():
        assert getattr(PPOSettings(**TINY), name) != value, name
        assert not _same(base, _train(**{name: value})), f"{name}={value!r} changed nothing"


FT = {"d_token": 8, "n_heads": 2, "d_out": 8, "n_blocks": 1}
FT_CHANGES: dict[str, Any] = {
    "d_token": 16, "n_blocks": 2, "n_heads": 4, "dropout": 0.5, "d_out": 4, "share": False,
    "freeze": True, "lr_scale": 0.1,
}  # fmt: skip


def test_every_ft_encoder_setting_changes_training() -> None:
    # where the encoder's weights come from (and whether another timeframe's may):
    # tests/training/rl/test_pretrain.py, tests/workflows/test_compare.py
    loading = {"pretrained", "pretrained_root", "pretrained_weights", "allow_timeframe_transfer"}
    assert set(FTPolicySettings.model_fields) - loading == set(FT_CHANGES), (
        "a new FT setting needs a change"
    )
    base = _train(ft=FT)
    for name, value in FT_CHANGES.items():
        assert getattr(FTPolicySettings(**FT), name) != value, name
        assert not _same(base, _train(ft={**FT, name: value})), (
            f"ft.{name}={value!r} changed nothing"
        )


def test_ft_policy_uses_its_encoder_and_freezing_really_freezes() -> None:
    from cappuccino.models.ft_transformer import count_parameters_formula
    from cappuccino.training.rl.ppo import build_policy

    env = make_env(random_market(t=120, a=3), n_envs=4, episode_bars=10, lookback=2)
    torch.manual_seed(0)
    pol = build_policy(env, PPOSettings(**TINY, ft=FT, hidden_sizes=[16]))
    enc = count_parameters_formula(n_assets=3, n_features=2, lookback=2, d_token=8, n_blocks=1,
                                   d_out=8)  # fmt: skip
    heads = (8 * 16 + 16 + 16 * 3 + 3) + (8 * 16 + 16 + 16 + 1)  # actor, critic MLPs
    assert sum(p.numel() for p in pol.parameters()) == enc + heads + 3  # + log std
    obs = env.reset()
    before = pol.act(obs)
    with torch.no_grad():
        pol.encoder.temporal_weight.add_(0.5)  # type: ignore[union-attr]
    assert not torch.allclose(pol.act(obs), before)  # the encoder is in the forward pass
    # frozen: the encoder ends as it started, the heads learn
    torch.manual_seed(0)
    start = build_policy(env, PPOSettings(**TINY, ft={**FT, "freeze": True}))
    enc0 = {k: v.clone() for k, v in start.encoder.state_dict().items()}  # type: ignore[union-attr]
    head0 = {k: v.clone() for k, v in start.actor.state_dict().items()}
    res = train_ppo(env, PPOSettings(**TINY, ft={**FT, "freeze": True}), seed=0, policy=start)
    assert all(torch.equal(v, enc0[k]) for k, v in res.policy.encoder.state_dict().items())  # type: ignore[union-attr]
    assert not all(torch.equal(v, head0[k]) for k, v in res.policy.actor.state_dict().items())
    with pytest.raises(ValueError, match="d_token 8 is not divisible by n_heads 3"):
        build_policy(env, PPOSettings(**TINY, ft={**FT, "n_heads": 3}))


def test_an_ft_policy_bundle_round_trips(tmp_path: Path) -> None:
    data = random_market(t=120, a=3)
    env = make_env(data, n_envs=4, episode_bars=10, lookback=2)
    res = train_ppo(env, PPOSettings(**TINY, ft={**FT, "share": False}), seed=0)
    path = save_bundle(tmp_path / "b", res.policy, data=data, env_settings=env.settings,
                       rules=env.rules, scaler=env.scaler, config={}, history=res.history,
                       train_period=period_of(data))  # fmt: skip
    b = load_bundle(path)
    obs = env.reset()
    torch.testing.assert_close(b.policy.act(obs), res.policy.eval().act(obs))
    assert b.policy.critic_encoder is not b.policy.encoder  # separate encoders survive


def test_device_setting_is_validated_by_torch() -> None:
    env = make_env(random_market(t=120, a=3), n_envs=4, episode_bars=10)
    res = train_ppo(env, PPOSettings(**TINY, device="cpu"), seed=0)
    assert next(res.policy.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="n_envs"):
        train_ppo(env, PPOSettings(**{**TINY, "n_envs": 8, "minibatch_size": 16}), seed=0)


def _trend_market(t: int = 400) -> Any:
    # asset 0 rises 0.5 % a bar, asset 1 falls 0.5 %: the optimal policy holds asset 0 only
    up = 100 * np.exp(0.005 * np.arange(t))
    down = 100 * np.exp(-0.005 * np.arange(t))
    close = np.stack([up, down], axis=1)
    open_ = np.vstack([close[:1], close[:-1]])
    feats = np.random.default_rng(0).normal(size=(t, 2, 1))
    return market(open_, close, feats)


def _policy_log_growth(env: BatchedTradingEnv, res: PPOResult, starts: torch.Tensor) -> float:
    obs = env.reset(starts=starts)
    total = torch.zeros(env.n_envs, dtype=torch.float64)
    for _ in range(env.horizon):
        obs, _, _, _, info = env.step(res.policy.act(obs))
        total += info.log_return
    return float(total.mean())


def test_ppo_reaches_near_optimal_return_on_a_trending_market() -> None:
    data = _trend_market()
    env = make_env(data, n_envs=16, episode_bars=50, reward_scale=100.0)
    settings = PPOSettings(
        total_timesteps=40_000,
        n_envs=16,
        n_steps=64,
        minibatch_size=256,
        n_epochs=5,
        learning_rate=1e-3,
    )
    res = train_ppo(env, settings, seed=0)
    evaluation = make_env(data, n_envs=8, episode_bars=50, autoreset=False, scaler=env.scaler)
    growth = _policy_log_growth(evaluation, res, torch.arange(8) * 40 + 10)
    optimal = 50 * 0.005  # fully in asset 0 from the first fill, no fees here
    assert growth >= 0.9 * optimal, (growth, optimal)


def test_ppo_beats_a_random_policy_on_the_sample() -> None:
    data = build_market_arrays(
        pl.read_parquet(sample_path()), "cappuccino14", Timeframe.parse("1h")
    )
    train = data.slice(0, 4000)
    settings = EnvSettings(lookback=4, episode_bars=240)
    rules = MarketRules()  # 0.1 % fees
    scaler = fit_scaler(train)
    env = BatchedTradingEnv(train, settings=settings, rules=rules, n_envs=16, scaler=scaler, seed=0)
    ppo = PPOSettings(
        total_timesteps=16_384, n_envs=16, n_steps=128, minibatch_size=512, n_epochs=4
    )
    res = train_ppo(env, ppo, seed=0)
    ev = BatchedTradingEnv(
        train, settings=settings, rules=rules, n_envs=12, scaler=scaler, autoreset=False
    )
    starts = torch.arange(12) * 300 + 10
    trained = _policy_log_growth(ev, res, starts)
    ev.reset(starts=starts)
    g = torch.Generator().manual_seed(0)
    rand = torch.zeros(12, dtype=torch.float64)
    for _ in range(ev.horizon):
        _obs, _, _, _, info = ev.step(torch.rand(12, 7, generator=g) * 2 - 1)
        rand += info.log_return
    assert trained > float(rand.mean()) + 0.05, (trained, float(rand.mean()))


def test_bundle_round_trip_and_mismatch_errors(tmp_path: Path) -> None:
    data = random_market(t=120, a=3)
    res = _train()
    env = make_env(data, n_envs=4)
    path = save_bundle(
        tmp_path / "b",
        res.policy,
        data=data,
        env_settings=env.settings,
        rules=env.rules,
        scaler=env.scaler,
        config={"seed": 0},
        history=[*res.history, {"update": 3.0, "mean_episode_log_return": float("nan")}],
        train_period=period_of(data),
    )
    history = json.loads((path / "history.json").read_text(), parse_constant=pytest.fail)
    assert history[-1]["mean_episode_log_return"] is None  # strict JSON: null, not NaN
    meta = json.loads((path / "bundle.json").read_text())
    assert meta["symbols"] == list(data.symbols) and meta["versions"]["torch"] == torch.__version__
    b = load_bundle(path)
    obs = env.reset(seed=0)
    assert torch.equal(b.policy.act(obs), res.policy.act(obs))
    assert b.env_settings == env.settings and b.rules == env.rules
    assert np.array_equal(b.scaler.center, env.scaler.center)
    b.check_data(data)
    other = market(data.open[:, ::-1].copy(), data.close[:, ::-1].copy(), data.features)
    swapped = type(data)(**{**other.__dict__, "symbols": data.symbols[::-1]})
    with pytest.raises(ValueError, match=r"symbols \(in order\) is \['A0/USDT'"):
        b.check_data(swapped)
    with pytest.raises(ValueError, match=r"not a bundle \(no bundle.json\)"):
        load_bundle(tmp_path)
