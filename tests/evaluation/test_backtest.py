"""Backtests, benchmarks, the degenerate flag and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cappuccino.evaluation.backtest import run_backtest
from cappuccino.evaluation.degenerate import degenerate_verdict
from cappuccino.market import MarketRules
from cappuccino.policies import EnsemblePolicy, MarketView, SignalPolicy, benchmark_policy
from cappuccino.workflows.backtest import evaluate, write_evaluation

from ..conftest import BACKTEST_JSON_KEYS
from ..training.rl.helpers import market, period_of


def _flat_then_up() -> object:
    # two assets; open = previous close. Asset 0 doubles over the test, asset 1 is flat.
    t = 12
    c0 = np.array([100.0] * 2 + [100.0 * 2 ** (i / 9) for i in range(10)])
    c1 = np.full(t, 50.0)
    close = np.stack([c0, c1], axis=1)
    open_ = np.vstack([close[:1], close[:-1]])
    return market(open_, close)


def _bt(policy: str, fee: float = 0.0, first: int = 1):  # type: ignore[no-untyped-def]
    data = _flat_then_up()
    rules = MarketRules(
        buy_fee_rate=fee, sell_fee_rate=fee, min_order_notional=0.0, initial_cash=1000.0
    )
    return run_backtest(data, benchmark_policy(policy, data.symbols), rules=rules, first=first)


def test_benchmarks_by_hand() -> None:
    cash = _bt("cash")
    assert cash.equity.tolist() == [1000.0] * 11 and cash.metrics["fees_paid"] == 0.0
    single = _bt("single:A0/USDT")
    # all in at bar 2's open (= bar 1's close, 100); closes at 200 on the last bar
    assert single.equity[-1] == pytest.approx(2000.0)
    assert single.metrics["total_return"] == pytest.approx(1.0)
    bh = _bt("buy_and_hold", fee=0.001)
    # 500 into each; pro rata for the fee: each buy scaled by 1/1.001
    assert bh.equity[-1] == pytest.approx(1000 / 1.001 * 0.5 * (2 + 1))
    assert bh.metrics["fees_paid"] == pytest.approx(1000 / 1.001 * 0.001)
    assert len(bh.trades_frame()) == 2  # bought once, held


def test_rebalanced_equal_weight_trades_every_k_bars() -> None:
    every1 = _bt("equal_weight", fee=0.001)
    every5 = _bt("equal_weight:5", fee=0.001)
    trades1 = every1.trades_frame()
    trades5 = every5.trades_frame()
    assert trades5["timestamp"].n_unique() == 2  # steps 0 and 5
    # every step but the second, where prices had not moved since the first fill
    assert trades1["timestamp"].n_unique() == 9
    assert every1.metrics["fees_paid"] > every5.metrics["fees_paid"] > 0
    with pytest.raises(ValueError, match="equal_weight:K"):
        benchmark_policy("equal_weight:x", ("A/USDT",))
    with pytest.raises(ValueError, match="not in"):
        benchmark_policy("single:DOGE/USDT", ("A/USDT",))


def test_degenerate_flag() -> None:
    rng = np.random.default_rng(0)
    bench = rng.normal(0, 0.01, 500)
    w_const = np.full((500, 2), 0.5)
    v = degenerate_verdict(bench * 0.99 + 1e-5, w_const, {"buy_and_hold": bench})
    assert v["degenerate"] and v["matches"] == "buy_and_hold"
    w_moving = rng.uniform(0, 0.5, (500, 2))
    v = degenerate_verdict(rng.normal(0, 0.01, 500), w_moving, {"buy_and_hold": bench})
    assert not v["degenerate"] and v["reason"] == "distinct from every benchmark"
    v = degenerate_verdict(np.zeros(500), np.zeros((500, 2)), {"buy_and_hold": bench})
    assert v["degenerate"] and v["matches"] == "cash"
    # correlated but actively re-weighted is reported as similar, not degenerate
    v = degenerate_verdict(bench, w_moving, {"buy_and_hold": bench})
    assert not v["degenerate"] and "similar" in v["reason"]


def test_evaluate_writes_metrics_frames_and_report(tmp_path: Path) -> None:
    data = _flat_then_up()
    ev = evaluate(data, "buy_and_hold", rules=MarketRules(min_order_notional=0.0))
    paths = write_evaluation(ev, tmp_path / "out", tmp_path / "r.html")
    doc = json.loads(Path(paths["metrics"]).read_text())
    for key in BACKTEST_JSON_KEYS:
        if key in ("cagr", "calmar"):  # 11 hourly bars: no annualised compounding
            assert doc[key] is None and "cagr, calmar: null" in doc["notes"][0]
        else:
            assert isinstance(doc[key], float | int) and math.isfinite(doc[key])
    assert set(doc["benchmarks"]) == {"cash", "equal_weight:24", "single:A0/USDT"}
    html = Path(paths["report"]).read_text()
    assert "Equity (start = 1)" in html and "buy_and_hold" in html and "plotly" in html


def test_trades_record_execution_price_notional_and_fee() -> None:
    data = _flat_then_up()
    rules = MarketRules(
        buy_fee_rate=0.001, sell_fee_rate=0.002, slippage_rate=0.01, min_order_notional=0.0,
        initial_cash=1000.0,
    )  # fmt: skip
    res = run_backtest(data, benchmark_policy("equal_weight:5", data.symbols), rules=rules, first=1)
    trades = res.trades_frame()
    first = trades.filter(pl.col("symbol") == "A0/USDT").row(0, named=True)
    # all-cash start: 500 of targets per asset at open 100 cost 101 * 1.001 per unit; pro rata
    units = 5 * 1000 / (1000 * 1.01 * 1.001)
    assert first["side"] == "buy" and first["units"] == pytest.approx(units)
    assert first["price"] == pytest.approx(101.0)
    assert first["fee"] == pytest.approx(units * 101.0 * 0.001)
    sells = trades.filter(pl.col("side") == "sell")
    assert (sells["fee"] - sells["notional"] * 0.002).abs().max() < 1e-9
    assert trades["fee"].sum() == pytest.approx(res.metrics["fees_paid"])


def test_signal_policy_trades_slots_for_the_hold_period_by_hand() -> None:
    close = np.array([[10.0, 5], [11, 5], [14, 5], [15, 5], [15, 5], [15, 5]])
    open_ = np.array([[10.0, 5], [10, 5], [12, 5], [15, 5], [15, 5], [15, 5]])
    data = market(open_, close)
    ts = data.timestamps
    # A0 signals at bar 0 only; A1 at bar 3 and 4; bar 5 has no prediction at all
    preds = pl.DataFrame(
        {
            "timestamp": [ts[0], ts[0], ts[1], ts[2], ts[3], ts[4], ts[4]],
            "symbol": ["A0/USDT", "A1/USDT", "A0/USDT", "A0/USDT", "A1/USDT", "A1/USDT",
                       "A0/USDT"],
            "signal": [True, False, False, False, True, True, False],
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))  # fmt: skip
    policy = SignalPolicy.from_predictions("clf", preds, data.symbols, 3_600_000, hold_bars=2)
    on = policy.active(ts)
    assert on.tolist() == [[True, False], [True, False], [False, False], [False, True],
                           [False, True], [False, True]]  # fmt: skip
    rules = MarketRules(
        buy_fee_rate=0.0, sell_fee_rate=0.0, min_order_notional=0.0, initial_cash=1000.0
    )
    r = run_backtest(data, policy, rules=rules, first=0)
    # bar 0 close: A0 on -> 500 / open 10 = 50 units at bar 1's open; held through bar 1
    # (still on, not re-sized although it rose); off at bar 2 -> sold at bar 3's open (15):
    # cash 500 + 750 = 1250. A1 on at bar 3 -> 625 / 5 = 125 units at bar 4's open, held.
    assert r.equity.tolist() == pytest.approx([1000, 1050, 1200, 1250, 1250, 1250])
    assert r.bought[:, 0].tolist() == [50, 0, 0, 0, 0]
    assert r.sold[:, 0].tolist() == [0, 0, 50, 0, 0]
    assert r.bought[:, 1].tolist() == [0, 0, 0, 125, 0]
    assert r.traded_notional.tolist() == pytest.approx([500, 0, 750, 625, 0])
    with pytest.raises(ValueError, match=r"symbols \['X/USDT'\] not among"):
        SignalPolicy.from_predictions(
            "x", preds.with_columns(pl.lit("X/USDT").alias("symbol")), data.symbols, 3_600_000
        )
    ev = evaluate(data, policy, rules=rules, benchmarks=["cash"])
    assert ev.policy.name == "clf" and ev.verdict is not None  # classifiers get the verdict


def _rl_bundle(tmp: Path, data: object, seed: int, lookback: int = 2) -> object:
    import torch

    from cappuccino.bundles.rl import load_bundle, save_bundle
    from cappuccino.config.rl import PPOSettings
    from cappuccino.training.rl.ppo import build_policy

    from ..training.rl.helpers import make_env

    env = make_env(data, lookback=lookback)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    net = build_policy(env, PPOSettings(hidden_sizes=[16]))
    path = save_bundle(
        tmp / f"b{seed}", net, data=data, env_settings=env.settings, rules=env.rules,  # type: ignore[arg-type]
        scaler=env.scaler, config={}, history=[], train_period=period_of(data),
    )  # fmt: skip
    return load_bundle(path)


def test_ensemble_policy_acts_with_the_mean_of_its_members_actions(tmp_path: Path) -> None:
    import torch

    from ..training.rl.helpers import make_env, random_market

    data = random_market(t=120, a=3, seed=2)
    a, b = _rl_bundle(tmp_path, data, 1), _rl_bundle(tmp_path, data, 2)
    rules = a.rules  # type: ignore[attr-defined]
    # two copies of one policy: exactly that policy
    solo = run_backtest(data, a.as_policy(), rules=rules, first=1)  # type: ignore[attr-defined]
    twice = run_backtest(data, EnsemblePolicy([a.as_policy(), a.as_policy()]), rules=rules,  # type: ignore[attr-defined]
                         first=1)  # fmt: skip
    np.testing.assert_allclose(twice.equity, solo.equity)
    # two policies on one state, observed by the env: the target of the mean action
    env = make_env(data, lookback=2, scaler=a.scaler)  # type: ignore[attr-defined]
    obs = env.reset(starts=torch.tensor([5]))
    mean = (a.policy.act(obs) + b.policy.act(obs)) / 2  # type: ignore[attr-defined]
    ens = EnsemblePolicy([a.as_policy(), b.as_policy()])  # type: ignore[attr-defined]
    ens.bind(data)  # type: ignore[arg-type]
    pf = env.portfolio
    view = MarketView(step=0, t=env.t, portfolio=pf, equity=env.equity,
                      close=env.close[env.t], fill_price=env.fill_price)  # fmt: skip
    got = ens.decide(view)
    torch.testing.assert_close(got, env.action_to_target_units(mean))


def test_a_batch_of_policies_gives_each_one_its_solo_result(tmp_path: Path) -> None:
    from cappuccino.evaluation.backtest import run_backtests

    from ..training.rl.helpers import random_market

    data = random_market(t=150, a=3, seed=4)
    net = _rl_bundle(tmp_path, data, 3).as_policy()  # type: ignore[attr-defined]
    rules = MarketRules(buy_fee_rate=0.001, sell_fee_rate=0.002, slippage_rate=0.001,
                        min_order_notional=5.0, max_weight=0.6)  # fmt: skip
    specs = ["cash", "buy_and_hold", "equal_weight:7", "single:A1/USDT"]
    batch = run_backtests(data, [net, *(benchmark_policy(s, data.symbols) for s in specs)],
                          rules=rules, first=3)  # fmt: skip
    solo = [run_backtest(data, p, rules=rules, first=3)
            for p in [net, *(benchmark_policy(s, data.symbols) for s in specs)]]  # fmt: skip
    assert [r.name for r in batch] == ["policy", *specs]
    for b, s in zip(batch, solo, strict=True):
        for field in ("equity", "weights", "traded_notional", "fees", "bought", "sold"):
            np.testing.assert_array_equal(getattr(b, field), getattr(s, field))
        assert b.metrics == s.metrics
    with pytest.raises(ValueError, match=r"first decision bar 0, expected one in \[1, 148\]"):
        run_backtests(data, [net], rules=rules, first=0)  # the net reads 2 bars
