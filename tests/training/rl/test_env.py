"""The batched trading env: time alignment, accounting, resets, segments, independence."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from cappuccino.config.rl import EnvSettings
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import build_market_arrays, fit_scaler
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules, ObservationSpec
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.gym import TradingEnv, TradingVectorEnv

from .helpers import make_env, market, random_market


@pytest.fixture(scope="module")
def sample_arrays():  # type: ignore[no-untyped-def]
    return build_market_arrays(
        pl.read_parquet(sample_path()), "cappuccino14", Timeframe.parse("1h")
    )


def test_seed_layout_has_988_floats_for_7_assets_14_features_lookback_10(sample_arrays) -> None:  # type: ignore[no-untyped-def]
    data = sample_arrays.slice(0, 500)
    env = BatchedTradingEnv(
        data,
        settings=EnvSettings(lookback=10, episode_bars=100),
        rules=MarketRules(),
        n_envs=3,
        scaler=fit_scaler(data),
    )
    obs = env.reset()
    assert obs.shape == (3, 988) and obs.dtype == torch.float32
    head, window = ObservationSpec(n_assets=7, n_features=14, lookback=10).split(obs)
    assert head[:, 0].tolist() == [1.0, 1.0, 1.0]  # all cash
    # window[:, 0] is the latest bar t, scaled with the training scaler
    t = env.t
    expected = env.scaler.transform(data.features[t.numpy()])
    assert np.allclose(window[:, 0].numpy(), np.clip(expected, -10, 10), atol=1e-6)
    expected_prev = env.scaler.transform(data.features[(t - 9).numpy()])
    assert np.allclose(window[:, 9].numpy(), np.clip(expected_prev, -10, 10), atol=1e-6)


def test_observation_ignores_the_future_and_orders_fill_at_the_next_open() -> None:
    data = random_market(t=60, a=2)
    altered = market(data.open.copy(), data.close.copy(), data.features.copy())
    t0 = 30
    for arr in (altered.open, altered.close, altered.features):
        arr[t0 + 1 :] *= 1.5
    fee = 0.001
    rules = MarketRules(buy_fee_rate=fee, sell_fee_rate=fee, min_order_notional=0.0)
    scaler = Scaler.fit(data.features[: t0 + 1])  # training bars only, shared by both
    envs = [make_env(d, rules=rules, episode_bars=5, scaler=scaler) for d in (data, altered)]
    obs = [e.reset(starts=torch.tensor([t0])) for e in envs]
    assert torch.equal(obs[0], obs[1])
    # all in asset 0: cash 1e6 buys 1e6 / (open * (1 + fee)) units at bar t0+1's open,
    # valued at bar t0+1's close
    action = torch.tensor([[1.0, -1.0]])
    for d, e in zip((data, altered), envs, strict=True):
        _, reward, *_ = e.step(action)
        o, c = d.open[t0 + 1, 0], d.close[t0 + 1, 0]
        assert reward.item() == pytest.approx(math.log(c / o) - math.log(1 + fee), rel=1e-5)


def test_target_weight_actions_map_to_a_simplex_over_assets_and_cash() -> None:
    data = random_market(t=40, a=4)
    env = make_env(data, n_envs=3)
    env.reset(starts=torch.tensor([10]))
    a = torch.tensor(
        [[-1.0] * 4, [2 / 4 - 1] * 4, [1.0, 1.0, 0.0, -1.0]]  # cash, equal weight, 1:1:0.5:0
    )
    _, _, _, _, info = env.step(a)
    w = env.portfolio.units * env.open[11] / 1e6
    assert w[0].tolist() == [0.0] * 4
    assert w[1].tolist() == pytest.approx([0.25] * 4)
    assert w[2].tolist() == pytest.approx([0.4, 0.4, 0.2, 0.0])
    assert info.fill.fees.tolist() == [0.0, 0.0, 0.0]


def test_trade_mode_buys_and_sells_fractions_of_equity() -> None:
    data = market(np.full((30, 2), 100.0), np.full((30, 2), 100.0))
    env = make_env(data, action_mode="trade", trade_fraction=0.2)
    env.reset(starts=torch.tensor([5]))
    env.step(torch.tensor([[0.5, 1.0]]))  # buy 10 % and 20 % of 1e6 at 100
    assert env.portfolio.units[0].tolist() == pytest.approx([1000.0, 2000.0])
    env.step(torch.tensor([[-1.0, -0.25]]))  # sell up to 2000 units worth... capped at holdings
    assert env.portfolio.units[0].tolist() == pytest.approx([0.0, 1500.0])
    assert env.portfolio.cash.item() == pytest.approx(1e6 - 150_000)


def test_log_return_rewards_sum_to_the_episode_log_growth_without_double_count() -> None:
    data = random_market(t=80, a=3, seed=3)
    rules = MarketRules(buy_fee_rate=0.002, sell_fee_rate=0.002, min_order_notional=0.0)
    env = make_env(data, rules=rules, episode_bars=15, autoreset=False)
    env.reset(seed=4)
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for _ in range(15):
        _, r, _, trunc, info = env.step(torch.rand(1, 3, generator=g) * 2 - 1)
        total += r.item()
    assert bool(trunc.item())
    assert total == pytest.approx(math.log(info.equity.item() / 1e6), rel=1e-5)


def test_reset_restores_everything() -> None:
    data = random_market(t=120, a=3)
    env = make_env(data, n_envs=4, reward="differential_sharpe")
    first = env.reset(seed=11)
    t_first = env.t.clone()
    for _ in range(7):
        env.step(torch.ones(4, 3))
    again = env.reset(seed=11)
    assert torch.equal(first, again) and torch.equal(env.t, t_first)
    assert env.portfolio.cash.tolist() == [1e6] * 4
    assert env.portfolio.units.abs().sum().item() == 0.0
    assert env.reward_state.abs().sum().item() == 0.0 and env.steps.sum().item() == 0


def test_episodes_never_cross_segment_boundaries_and_envs_differ() -> None:
    data = random_market(t=200, a=2)
    segments = [(0, 40), (60, 90), (120, 200)]
    env = make_env(data, n_envs=16, segments=segments, episode_bars=8, lookback=3)
    env.reset(seed=0)
    assert len(set(env.t.tolist())) > 4  # independent starts, not 16 copies
    seg_of = np.full(200, -1)
    for k, (s, e) in enumerate(segments):
        seg_of[s:e] = k
    for _ in range(100):
        t_before = env.t.clone()
        _, _, _, trunc, _info = env.step(torch.zeros(16, 2))
        stepped = t_before + 1
        # the bar traded into is in the same segment as the bar the decision was made at
        assert (seg_of[stepped.numpy()] == seg_of[t_before.numpy()]).all()
        # new episodes start with a full lookback window inside one segment
        new = env.t[trunc].numpy()
        assert (seg_of[new] == seg_of[new - 2]).all() and (seg_of[new] >= 0).all()


def test_an_env_does_not_see_other_envs_actions() -> None:
    data = random_market(t=100, a=3)
    a = make_env(data, n_envs=2, seed=5)
    b = make_env(data, n_envs=2, seed=5)
    a.reset(seed=1)
    b.reset(seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        act = torch.rand(2, 3, generator=g) * 2 - 1
        other = act.clone()
        other[1] = -act[1]
        _, ra, *_ = a.step(act)
        _, rb, *_ = b.step(other)
        assert ra[0].item() == rb[0].item()


def test_short_segment_and_feature_set_mismatch_are_clear_errors() -> None:
    data = random_market(t=50, a=2)
    with pytest.raises(ValueError, match=r"segment \(0, 10\) has 10 bars, expected >= "):
        make_env(data, segments=[(0, 10)], episode_bars=20)
    with pytest.raises(ValueError, match="feature_set"):
        make_env(data, feature_set="nn23")


def test_single_env_passes_gymnasium_check_env() -> None:
    env = make_env(random_market(t=100, a=3), autoreset=False, episode_bars=10)
    check_env(TradingEnv(env), skip_render_check=True)


def test_vector_env_reports_final_observations_of_finished_envs() -> None:
    env = TradingVectorEnv(make_env(random_market(t=100, a=3), n_envs=3, episode_bars=4))
    obs, _ = env.reset(seed=2)
    assert obs.shape == (3, env.single_observation_space.shape[0])
    for _i in range(4):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        assert reward.shape == (3,) and not term.any()
    assert trunc.all() and info["_final_obs"].all()
    assert info["final_obs"].shape == obs.shape and not np.array_equal(info["final_obs"], obs)


def test_obs_out_writes_the_same_observation_in_place() -> None:
    data = random_market(t=100, a=3)
    a, b = make_env(data, n_envs=4, seed=1), make_env(data, n_envs=4, seed=1)
    a.reset(seed=0)
    b.reset(seed=0)
    buf = torch.full((4, a.obs_dim), float("nan"))
    for _ in range(25):  # across resets too (episode_bars=20)
        act = torch.rand(4, 3) * 2 - 1
        fresh, *_ = a.step(act)
        into, *_ = b.step(act, obs_out=buf)
        assert into.data_ptr() == buf.data_ptr() and torch.equal(fresh, buf)


def test_open_ended_episodes_stop_on_the_last_bar_of_their_segment() -> None:
    data = random_market(t=100, a=2)
    env = make_env(data, episode_bars=None, autoreset=False)
    env.reset(starts=torch.tensor([95]))
    truncs = [bool(env.step(torch.zeros(1, 2))[3].item()) for _ in range(4)]
    assert truncs == [False, False, False, True] and env.t.item() == 99
    env = make_env(data, n_envs=8, episode_bars=None, segments=[(0, 40), (60, 100)], lookback=3)
    env.reset(seed=0)
    ends = []
    for _ in range(200):
        _, _, _, trunc, info = env.step(torch.zeros(8, 2))
        ends += info.t_end[trunc].tolist()
    assert ends and set(ends) <= {39, 99}
