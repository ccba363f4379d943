"""The multi-agent view: equality with the single-agent env, benchmarks, the master's caps,
permutation equivariance, causality, rewards and the value normaliser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cappuccino.config.rl import MasterRewardSettings
from cappuccino.evaluation.backtest import run_backtest
from cappuccino.features.scaling import Scaler
from cappuccino.market import (
    BarSimulator,
    MarketRules,
    apply_risk_limits,
    decode_actions,
    decode_scores,
    master_limits,
)
from cappuccino.market.multiagent import MultiAgentSpec
from cappuccino.models.multiagent import MultiAgentActorCritic, ValueNorm
from cappuccino.policies import MarketView, MultiAgentPolicy, benchmark_policy
from cappuccino.training.rl.multiagent import MultiAgentTradingEnv
from cappuccino.training.rl.rewards import diversification, log_drawdown, master_reward_terms

from .helpers import make_env, market, random_market

FEES = MarketRules(buy_fee_rate=0.001, sell_fee_rate=0.001, min_order_notional=10.0,
                   slippage_rate=0.0005)  # fmt: skip


def _net(n: int, f: int, lookback: int, source: str = "mlp", seed: int = 0,
         **kw: object) -> MultiAgentActorCritic:  # fmt: skip
    torch.manual_seed(seed)
    enc: dict[str, object] = {"source": "mlp", "hidden": [16]}
    if source == "supervised":
        enc = {"source": "supervised", "model": "lstm_attention",
               "model_params": {"hidden": 8, "layers": 1, "heads": 2, "head_hidden": 8,
                                "asset_embedding": 3, "dropout": 0.0}}  # fmt: skip
    net = MultiAgentActorCritic(n_symbols=n, n_features=f, lookback=lookback, encoder=enc,
                                actor_hidden=[16], critic_hidden=[16], symbol_embedding=4,
                                **kw)  # type: ignore[arg-type]  # fmt: skip
    # bigger output weights than PPO's 0.01 init, so that the outputs differ across symbols
    for lin in (net.actor.net[-1], net.master_caps.net[-1]):
        torch.nn.init.normal_(lin.weight, std=1.0)  # type: ignore[arg-type]
    return net.eval()


# ---------------------------------------------------------------------- market rules


def test_risk_limit_tensors_tighten_the_rules_per_portfolio_and_asset() -> None:
    rules = MarketRules(max_weight=0.6, max_gross_exposure=0.9)
    price = torch.tensor([[10.0, 20.0], [10.0, 20.0]], dtype=torch.float64)
    equity = torch.tensor([1000.0, 1000.0], dtype=torch.float64)
    target = torch.tensor([[50.0, 25.0], [50.0, 25.0]], dtype=torch.float64)  # 500 + 500
    caps = torch.tensor([[0.2, 1.0], [1.0, 1.0]], dtype=torch.float64)
    gross = torch.tensor([1.0, 0.5], dtype=torch.float64)
    out = apply_risk_limits(target, price, equity, rules, max_weight=caps, max_gross=gross)
    value = (out * price).tolist()
    # row 0: asset 0 capped at 0.2 -> 200; asset 1 at the rules' 0.6 -> 500 is under it;
    # gross 700 <= min(1.0, 0.9) * 1000
    assert value[0] == pytest.approx([200.0, 500.0])
    # row 1: caps 0.6 (the rules') -> 500, 500; gross limit 0.5 -> scaled by 500 / 1000
    assert value[1] == pytest.approx([250.0, 250.0])
    same = apply_risk_limits(target, price, equity, rules)
    assert torch.equal(same, apply_risk_limits(target, price, equity, rules, max_weight=None))


def test_master_action_maps_to_a_multiplier_of_the_gross_limit_and_caps_of_max_weight() -> None:
    rules = MarketRules(max_weight=0.5, max_gross_exposure=0.8)
    gross, caps = master_limits(torch.tensor([[1.0, -1.0, 0.0]]), rules)
    assert gross.tolist() == [0.8]
    assert caps.tolist() == [[0.0, 0.25]]
    scores = torch.tensor([[0.3, -0.2]])
    cash = torch.tensor([1000.0], dtype=torch.float64)
    units = torch.zeros((1, 2), dtype=torch.float64)
    price = torch.tensor([[10.0, 20.0]], dtype=torch.float64)
    plain = decode_actions(scores, mode="target_weights", cash=cash, units=units, price=price,
                           trade_fraction=1.0)  # fmt: skip
    assert torch.equal(decode_scores(scores, cash=cash, units=units, price=price, rules=rules),
                       plain)  # fmt: skip


# ---------------------------------------------------------------------- observation views


def test_telemetry_by_hand() -> None:
    # two assets, lookback 3: closes at bars 0, 1, 2
    close = torch.tensor([[100.0, 50.0], [110.0, 50.0], [99.0, 55.0]], dtype=torch.float64)
    spec = MultiAgentSpec(random_spec(a=2, f=1, lookback=3))
    # 60 % of equity in asset 0 at close[2] = 99 (6.0606 units of a 1000 equity), rest cash
    equity = torch.tensor([1000.0], dtype=torch.float64)
    units = torch.tensor([[600.0 / 99.0, 0.0]], dtype=torch.float64)
    cash = torch.tensor([400.0], dtype=torch.float64)
    tel = spec.telemetry(close, torch.tensor([2]), cash, units, equity)[0].tolist()
    v = [0.4 + 0.6 * 100 / 99, 0.4 + 0.6 * 110 / 99, 1.0]  # oldest first, relative to now
    r = [math.log(v[1] / v[0]), math.log(v[2] / v[1])]
    m = [math.log((1.1 + 1.0) / 2), math.log((0.9 + 1.1) / 2)]
    want = [0.4, 0.6, 100 * sum(r), 100 * float(np.std(r)),
            100 * math.log(1.0 / max(v)), 100 * sum(m), 100 * float(np.std(m))]  # fmt: skip
    assert tel == pytest.approx(want, rel=1e-5, abs=1e-6)


def random_spec(a: int, f: int, lookback: int):  # type: ignore[no-untyped-def]
    from cappuccino.market import ObservationSpec

    return ObservationSpec(n_assets=a, n_features=f, lookback=lookback)


def test_local_and_state_views_read_the_flat_observation() -> None:
    spec = MultiAgentSpec(random_spec(a=3, f=2, lookback=4))
    obs = torch.randn(5, spec.base.dim)
    tel = torch.randn(5, spec.d_telemetry)
    _, window = spec.base.split(obs)  # (N, L, A, F)
    local = spec.local(obs)
    assert local.shape == (5, 3, spec.d_local) and spec.d_local == 4 * 2 + 2
    for i in range(3):
        assert torch.equal(local[:, i, :8], window[:, :, i, :].reshape(5, 8))
        assert torch.equal(local[:, i, 8], obs[:, 1 + i])  # its weight
        assert torch.equal(local[:, i, 9], obs[:, 0])  # cash
    state = spec.state(obs, tel)
    assert state.shape == (5, spec.d_state)
    assert torch.equal(state[:, 4:10], window[:, 0].reshape(5, 6))  # the latest bar
    assert torch.equal(state[:, -7:], tel)
    # intents: scores (-1, 0, 1) ask for weights (0, .5, 1) -> normalised (0, 1/3, 2/3)
    feats = spec.intent_features(torch.tensor([[-1.0, 0.0, 1.0]]))[0].tolist()
    assert feats == pytest.approx([1.0, 2 / 3, 1 / 9 + 4 / 9, 0.0])


# ---------------------------------------------------------------------- rewards


def test_master_reward_terms_by_hand() -> None:
    eq = torch.tensor([90.0, 100.0], dtype=torch.float64)
    peak = torch.tensor([100.0, 100.0], dtype=torch.float64)
    assert log_drawdown(eq, peak).tolist() == pytest.approx([math.log(100 / 90), 0.0])
    w = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert diversification(w).tolist() == [0.5, 0.0]
    assert diversification(torch.tensor([[0.2, 0.0, 0.0]])).tolist() == [0.0]
    terms = master_reward_terms(
        torch.tensor([0.01, -0.02]), torch.tensor([0.3, -0.1]),
        torch.tensor([0.0, 0.05], dtype=torch.float64), torch.tensor([0.0, 0.07], dtype=torch.float64),
        w, 100.0,
    )  # fmt: skip
    assert terms[0].tolist() == pytest.approx([0.3, 1.0, 0.0, 0.5])
    assert terms[1].tolist() == pytest.approx([-0.1, -2.0, -2.0, 0.0])


def test_master_reward_is_the_weighted_sum_and_tracks_the_episode_peak() -> None:
    data = random_market(t=80, a=2, seed=3)
    base = make_env(data, 1, rules=FEES, autoreset=False, episode_bars=None)
    weights = MasterRewardSettings(sharpe=0.0, log_return=0.0, drawdown=1.0, diversification=0.0)
    env = MultiAgentTradingEnv(base, master_reward=weights)
    env.reset(starts=torch.tensor([5]))
    total, equity = 0.0, [base.equity.item()]
    for _ in range(60):
        st = env.step(torch.tensor([[1.0, 1.0]]))
        total += float(st.master_reward)
        equity.append(st.info.equity.item())
    # summed, the drawdown term is minus the final log drawdown from the peak (reward_scale 1)
    assert total == pytest.approx(-math.log(max(equity) / equity[-1]), rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------------- the env


def test_one_symbol_master_fixed_equals_the_single_agent_env_bit_for_bit() -> None:
    data = random_market(t=300, a=1, seed=7)
    single = make_env(data, 4, rules=FEES, seed=11, episode_bars=40)
    multi = MultiAgentTradingEnv(make_env(data, 4, rules=FEES, seed=11, episode_bars=40))
    assert torch.equal(single.reset(seed=5), multi.reset(seed=5))
    gen = torch.Generator().manual_seed(0)
    for _ in range(1000):
        a = torch.rand((4, 1), generator=gen) * 2 - 1
        obs, reward, _, trunc, info = single.step(a)
        st = multi.step(a)
        assert torch.equal(obs, st.obs) and torch.equal(reward, st.reward)
        assert torch.equal(trunc, st.truncated)
        for name in ("bought", "sold", "price", "asset_fees", "fees"):
            assert torch.equal(getattr(info.fill, name), getattr(st.info.fill, name)), name
        assert torch.equal(info.equity, st.info.equity)


def test_equal_weight_scores_give_the_equal_weight_benchmark_to_1e_9() -> None:
    data = random_market(t=200, a=4, seed=2)
    env = MultiAgentTradingEnv(make_env(data, 1, rules=FEES, autoreset=False, episode_bars=None))
    first = 5
    env.reset(starts=torch.tensor([first]))
    scores = torch.full((1, 4), 2 / 4 - 1)
    equity = [env.base.equity.item()]
    for _ in range(data.n_bars - 1 - first):
        equity.append(env.step(scores).info.equity.item())
    bench = run_backtest(data, benchmark_policy("equal_weight", data.symbols), rules=FEES,
                         first=first)  # fmt: skip
    assert np.allclose(np.array(equity), bench.equity, rtol=1e-9, atol=0)


def _weights_at_fill(fill, price):  # type: ignore[no-untyped-def]
    pf = fill.portfolio
    return pf.units * price / pf.equity(price).unsqueeze(1)


def test_master_caps_bound_every_realised_weight_in_training_and_backtest() -> None:
    data = random_market(t=160, a=3, seed=4)
    rules = MarketRules(buy_fee_rate=0.001, sell_fee_rate=0.001, min_order_notional=0.0,
                        max_weight=0.7)  # fmt: skip
    env = MultiAgentTradingEnv(make_env(data, 6, rules=rules, seed=1, episode_bars=30))
    env.reset(seed=1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        scores = torch.rand((6, 3), generator=gen) * 2 - 1
        master = torch.rand((6, 4), generator=gen) * 2 - 1
        gross, caps = master_limits(master, rules)
        price, eq0 = env.base.fill_price.clone(), env.base.portfolio.equity(env.base.fill_price)
        st = env.step(scores, master)
        w = _weights_at_fill(st.info.fill, price)
        slack = (eq0 / st.info.fill.portfolio.equity(price)).unsqueeze(1)  # fees paid
        assert bool((w <= caps * slack + 1e-12).all())
        assert bool((w.sum(1) <= gross * slack.squeeze(1) + 1e-12).all())
    # the backtest path: the policy decides, the simulator fills (run_backtests' transition)
    net = _net(3, data.features.shape[2], 2, log_std_init=0.0)
    policy = MultiAgentPolicy(net, settings=env.base.settings, scaler=env.base.scaler,
                              rules=rules, use_master=True)  # fmt: skip
    policy.bind(data)
    sim = BarSimulator(data.open, data.close, rules=rules)
    pf, t = sim.new_portfolios(1), torch.tensor([1])
    binding = 0
    for step in range(150):
        eq = sim.equity(pf, t)
        view = MarketView(step=step, t=t, portfolio=pf, equity=eq, close=sim.close[t],
                          fill_price=sim.fill_price(t))  # fmt: skip
        _, master = policy.actions(view)
        assert master is not None
        gross, caps = master_limits(master, rules)
        fill, _ = sim.step(pf, policy.decide(view), t)
        price = sim.fill_price(t)
        w = _weights_at_fill(fill, price)
        slack = pf.equity(price) / fill.portfolio.equity(price)
        assert bool((w <= caps * slack + 1e-12).all())
        binding += int(bool((w > caps - 1e-3).any()))
        pf, t = fill.portfolio, t + 1
    assert binding > 0  # the caps did bind somewhere (the check is not vacuous)


@pytest.mark.parametrize("source", ["mlp", "supervised"])
def test_permuting_symbols_with_their_ids_permutes_the_actions(source: str) -> None:
    a, f, lookback = 5, 3, 4
    net = _net(a, f, lookback, source)
    spec = net.spec
    gen = torch.Generator().manual_seed(3)
    head = torch.rand((6, 1 + a), generator=gen)
    window = torch.randn((6, lookback, a, f), generator=gen)
    tel = torch.randn((6, spec.d_telemetry), generator=gen)
    perm = torch.tensor([3, 0, 4, 1, 2])

    def flat(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, w.reshape(6, -1)], dim=1)

    scores, master = net.act(flat(head, window), tel)
    head_p = torch.cat([head[:, :1], head[:, 1:][:, perm]], dim=1)
    net.symbol_ids = net.symbol_ids[perm]
    scores_p, master_p = net.act(flat(head_p, window[:, :, perm]), tel)
    assert master is not None and master_p is not None
    assert scores.std() > 0.05  # the symbols' actions differ, so a permutation shows
    assert torch.allclose(scores_p, scores[:, perm], atol=1e-5)
    assert torch.allclose(master_p[:, 1:], master[:, 1:][:, perm], atol=1e-5)
    assert torch.allclose(master_p[:, 0], master[:, 0], atol=1e-5)


def test_no_multiagent_input_at_bar_t_sees_a_later_bar() -> None:
    data = random_market(t=80, a=3, seed=5)
    t0 = 40
    altered = market(data.open.copy(), data.close.copy(), data.features.copy())
    rng = np.random.default_rng(0)
    for arr in (altered.open, altered.close, altered.features):
        arr[t0 + 1 :] *= rng.uniform(0.5, 1.5, size=arr[t0 + 1 :].shape)
    scaler = Scaler.fit(data.features[: t0 + 1])
    net = _net(3, data.features.shape[2], 6)
    out = []
    for d in (data, altered):
        env = MultiAgentTradingEnv(make_env(d, 1, scaler=scaler, lookback=6, episode_bars=None,
                                            autoreset=False))  # fmt: skip
        env.reset(starts=torch.tensor([t0 - 10]))
        for _ in range(10):  # trade into a position through bars <= t0
            st = env.step(torch.tensor([[0.5, -0.5, 0.0]]), torch.tensor([[0.5, 0.9, 0.1, 0.2]]))
        assert int(env.base.t) == t0
        obs, tel = st.obs, st.telemetry
        spec = env.spec
        scores, master = net.act(obs, tel)
        policy = MultiAgentPolicy(net, settings=env.base.settings, scaler=scaler,
                                  rules=env.rules, use_master=True)  # fmt: skip
        policy.bind(d)
        pf = env.base.portfolio
        view = MarketView(step=0, t=env.base.t, portfolio=pf, equity=env.base.equity,
                          close=env.base.close[env.base.t], fill_price=env.base.fill_price)  # fmt: skip
        assert master is not None
        out.append([obs, tel, spec.local(obs), spec.master(tel, scores),
                    spec.master_symbol(obs, scores), spec.state(obs, tel), scores, master,
                    *policy.actions(view)])  # fmt: skip
    for x, y in zip(*out, strict=True):
        assert torch.equal(x, y)
    # and the bar after t0 does differ, so the comparison could fail
    assert not np.allclose(data.open[t0 + 1], altered.open[t0 + 1])


# ---------------------------------------------------------------------- value normaliser


def test_value_norm_tracks_the_running_moments_and_inverts() -> None:
    vn = ValueNorm(beta=0.5)
    vn.update(torch.tensor([1.0, 3.0]))  # mean 2, mean_sq 5
    vn.update(torch.tensor([5.0, 7.0]))  # mean 6, mean_sq 37
    # debiased EMAs with beta 0.5: ((0.5 * 0.5 * 2) + 0.5 * 6) / 0.75
    mean = (0.25 * 2 + 0.5 * 6) / 0.75
    mean_sq = (0.25 * 5 + 0.5 * 37) / 0.75
    m, s = vn.mean_std()
    assert float(m) == pytest.approx(mean)
    assert float(s) == pytest.approx(math.sqrt(mean_sq - mean**2))
    x = torch.tensor([0.0, 10.0])
    assert torch.allclose(vn.denormalize(vn.normalize(x)), x, atol=1e-6)
    off = ValueNorm(enabled=False)
    off.update(x)
    assert torch.equal(off.normalize(x), x)


# ---------------------------------------------------------------------- PettingZoo


@pytest.mark.parametrize("with_master", [True, False])
def test_pettingzoo_adapter_passes_the_parallel_api_test(with_master: bool) -> None:
    from pettingzoo.test import parallel_api_test

    from cappuccino.training.rl.pettingzoo import MASTER, MultiAgentParallelEnv

    data = random_market(t=120, a=3, seed=6)
    env = MultiAgentParallelEnv(
        MultiAgentTradingEnv(make_env(data, 1, rules=FEES, autoreset=False, episode_bars=25)),
        master=with_master,
    )
    parallel_api_test(env, num_cycles=60)
    # the adapter's rewards and fills are the batched env's for the same actions
    batched = MultiAgentTradingEnv(make_env(data, 1, rules=FEES, autoreset=False, episode_bars=25))
    env.reset(seed=3)
    batched.reset(seed=3)
    for step in range(25):
        acts = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, _, trunc, _ = env.step(acts)
        scores = torch.tensor([[float(acts[s][0]) for s in env.symbols]])
        master = torch.tensor(acts[MASTER]).reshape(1, -1) if with_master else None
        st = batched.step(scores, master)
        local = batched.spec.local(st.obs)[0]
        for i, s in enumerate(env.symbols):
            assert rewards[s] == float(st.reward[0])
            assert np.array_equal(obs[s], local[i].numpy())
        if with_master:
            assert rewards[MASTER] == float(st.master_reward[0])
            want = batched.spec.master(st.telemetry, scores)[0].numpy()
            assert np.array_equal(obs[MASTER], want)
        assert all(trunc.values()) == (step == 24)  # the 25-bar episode's last step
    assert env.agents == []
