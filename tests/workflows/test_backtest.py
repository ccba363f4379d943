"""Backtests that say what they did: every bar for benchmarks, moved bounds reported, one
timestamp convention, no annualised figures from a few days, a split inside the data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.config.rl import SplitSettings
from cappuccino.data.sample import sample_path
from cappuccino.market import MarketRules
from cappuccino.training.rl.train import train_period
from cappuccino.workflows.backtest import backtest_notes, evaluate, write_evaluation

from ..training.rl.helpers import random_market

runner = CliRunner()
RULES = MarketRules(buy_fee_rate=0.0, sell_fee_rate=0.0, min_order_notional=0.0)


def test_a_benchmark_backtest_uses_every_bar_and_takes_no_feature_set(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["data", "sample", "--store", store, "--json"]).exit_code == 0
    res = runner.invoke(app, ["backtest", "--store", store, "--policy", "buy_and_hold",
                              "--symbols", "BTC/USDT", "--out", str(tmp_path / "bt"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    ts = pl.read_parquet(sample_path()).filter(pl.col("symbol") == "BTC/USDT")["timestamp"]
    hours = int((ts.max() - ts.min()).total_seconds() // 3600)  # type: ignore[operator]
    # every hour of the calendar from the first bar to the last: no indicator warm-up dropped
    assert doc["n_bars"] == hours and doc["period"]["start"] == ts.min().isoformat()  # type: ignore[union-attr]
    flag = runner.invoke(app, ["backtest", "--store", store, "--policy", "cash",
                               "--feature-set", "nn23"])  # fmt: skip
    assert flag.exit_code == 2 and "No such option" in flag.output


def test_bounds_outside_the_data_are_moved_and_said() -> None:
    data = random_market(t=100, a=2, seed=1)
    first, last = data.datetime_at(0), data.datetime_at(99)
    ev = evaluate(data, "buy_and_hold", start="2000-01-01", end="2100-01-01T00:00:00+00:00",
                  rules=RULES, benchmarks=["cash"])  # fmt: skip
    p = ev.context["period"]
    assert (p["start"], p["end"]) == (first.isoformat(), last.isoformat())
    assert p["adjusted"] == [
        f"start moved from 2000-01-01T00:00:00+00:00 to {first.isoformat()}: the data starts "
        f"{first.isoformat()}",
        f"end moved from 2100-01-01T00:00:00+00:00 to {last.isoformat()}: the data ends there",
    ]
    assert ev.policy.metrics["n_bars"] == 99
    # inside the data nothing moves; a start without the lookback's history is moved and said
    inside = evaluate(data, "cash", start=data.datetime_at(5), rules=RULES, benchmarks=[])
    assert inside.context["period"]["adjusted"] == []
    with pytest.raises(ValueError, match="no bars to backtest between 2100-01-01 and None"):
        evaluate(data, "cash", start="2100-01-01", rules=RULES, benchmarks=[])


def test_period_equity_and_trades_share_one_timestamp_convention(tmp_path: Path) -> None:
    data = random_market(t=60, a=2, seed=3)
    ev = evaluate(data, "buy_and_hold", start=data.datetime_at(10), rules=RULES,
                  benchmarks=["cash"])  # fmt: skip
    paths = write_evaluation(ev, tmp_path)
    equity = pl.read_parquet(paths["equity"]).filter(pl.col("policy") == "buy_and_hold")
    period = json.loads(Path(paths["metrics"]).read_text())["period"]
    # bar open times: the first equity point is the first decision bar, the last the last bar
    assert equity["timestamp"][0].isoformat() == period["start"] == data.datetime_at(10).isoformat()
    assert equity["timestamp"][-1].isoformat() == period["end"] == data.datetime_at(59).isoformat()
    assert "bar open times" in period["convention"]
    # decided at bar 10's close, filled at bar 11's open: the trade is keyed by bar 11
    trades = pl.read_parquet(paths["trades"])
    assert trades["timestamp"].unique().to_list() == [data.datetime_at(11)]
    np.testing.assert_allclose(trades["price"].to_numpy(), data.open[11])


def test_annualised_figures_are_null_under_thirty_days(tmp_path: Path) -> None:
    data = random_market(t=800, a=2, seed=5)
    short = evaluate(data, "buy_and_hold", start=data.datetime_at(797), rules=RULES,
                     benchmarks=["cash"])  # fmt: skip
    m = short.policy.metrics
    assert m["n_bars"] == 2 and m["cagr"] is None and m["calmar"] is None
    assert m["notes"] == ["cagr, calmar: null: 0.0833 days of bars, under 30 (compounding so "
                          "short a period to a year means nothing)"]  # fmt: skip
    assert isinstance(m["sharpe"], float) and backtest_notes(short) == m["notes"]
    html = Path(write_evaluation(short, tmp_path, tmp_path / "r.html")["report"]).read_text()
    assert "n/a" in html and "under 30" in html
    # 30 days and more: CAGR compounds the period's growth to a year, by hand
    long = evaluate(data, "cash", start=data.datetime_at(79), rules=RULES, benchmarks=[])
    eq = long.policy.equity
    assert long.policy.metrics["n_bars"] == 720 and long.policy.metrics["notes"] == []
    assert long.policy.metrics["cagr"] == pytest.approx((eq[-1] / eq[0]) ** (8760 / 720) - 1)


def test_a_training_end_after_the_data_is_an_error() -> None:
    data = random_market(t=50, a=2)
    end = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"split.train_end: got 2030-01-01T00:00:00\+00:00, after "
                                         r"the data's last bar"):  # fmt: skip
        train_period(data, SplitSettings(train_end=end))
    ok = train_period(data, SplitSettings(train_end=data.datetime_at(29)))
    assert ok.n_bars == 30
