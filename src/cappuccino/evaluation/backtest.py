"""Backtests on the market runtime: every policy and benchmark is one row of a batch.

Each policy decides from a :class:`~cappuccino.policies.MarketView` at the close of bar
``t``; the :class:`~cappuccino.market.BarSimulator` fills all rows at bar ``t + 1``'s open
and values them at its close, the same transition the RL env and the paper broker use.
Benchmarks (:func:`~cappuccino.policies.benchmark_policy`) are policies too.

Timestamps (``equity.parquet``, ``trades.parquet``, the JSON ``period``) are bar **open**
times in UTC, as the store and the predictions key their bars: an equity point or a
weight is the value at the **close** of its bar (the first point: the close of the first
decision bar, before any fill), and a trade fills at the **open** of its bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from cappuccino.datasets.market import MarketArrays
from cappuccino.market import BarSimulator, MarketRules
from cappuccino.metrics.returns import summarize
from cappuccino.policies import MarketView, Policy


@dataclass
class BacktestResult:
    """One policy over one period. ``equity`` has ``n_bars + 1`` values (start first), each
    the value at the close of the bar whose open time is in ``timestamps``."""

    name: str
    timestamps: npt.NDArray[np.int64]  # (n_bars + 1,) open time of each equity point's bar, ms
    equity: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]  # (n_bars + 1, A) at each close
    traded_notional: npt.NDArray[np.float64]  # (n_bars,)
    fees: npt.NDArray[np.float64]  # (n_bars,)
    bought: npt.NDArray[np.float64]  # (n_bars, A) units
    sold: npt.NDArray[np.float64]  # (n_bars, A) units
    fill_price: npt.NDArray[np.float64]  # (n_bars, A) execution price (open +- slippage)
    asset_fees: npt.NDArray[np.float64]  # (n_bars, A) fees per asset, quote currency
    symbols: tuple[str, ...]
    metrics: dict[str, Any]

    @property
    def returns(self) -> npt.NDArray[np.float64]:
        """Per-bar simple returns."""
        return self.equity[1:] / self.equity[:-1] - 1.0

    def equity_frame(self) -> pl.DataFrame:
        frame = pl.DataFrame({"timestamp": self.timestamps, "equity": self.equity}).with_columns(
            pl.col("timestamp").cast(pl.Datetime("ms", "UTC"))
        )
        return frame.with_columns(
            pl.Series(f"w_{s}", self.weights[:, i]) for i, s in enumerate(self.symbols)
        )

    def trades_frame(self) -> pl.DataFrame:
        """One row per executed order: its bar's open time (the bar after the decision; the
        order fills at that open), symbol, side, units, execution price, notional and fee
        (quote currency)."""
        parts = []
        for side, arr in (("buy", self.bought), ("sell", self.sold)):
            t, a = np.nonzero(arr > 0)
            parts.append(
                pl.DataFrame(
                    {
                        "timestamp": self.timestamps[t + 1],
                        "symbol": np.asarray(self.symbols, dtype=object)[a].astype(str),
                        "side": np.full(t.size, side),
                        "units": arr[t, a],
                        "price": self.fill_price[t, a],
                        "notional": arr[t, a] * self.fill_price[t, a],
                        "fee": self.asset_fees[t, a],
                    },
                    schema={
                        "timestamp": pl.Int64,
                        "symbol": pl.String,
                        "side": pl.String,
                        "units": pl.Float64,
                        "price": pl.Float64,
                        "notional": pl.Float64,
                        "fee": pl.Float64,
                    },
                )
            )
        return (
            pl.concat(parts)
            .with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
            .sort(["timestamp", "symbol"])
        )


def run_backtests(
    data: MarketArrays,
    policies: Sequence[Policy],
    *,
    rules: MarketRules,
    first: int,
    device: torch.device | str = "cpu",
) -> list[BacktestResult]:
    """Run every policy from bar ``first`` (the first decision, at its close) to the last
    bar, as one batch of ``len(policies)`` portfolios; results in the order given.

    Bars before ``first`` serve only as the observation windows' history: ``first`` must be
    at least the longest policy lookback minus one.
    """
    if not policies:
        raise ValueError("backtest: no policies")
    need = max(p.lookback for p in policies) - 1
    if not need <= first <= data.n_bars - 2:
        raise ValueError(
            f"backtest: first decision bar {first}, expected one in [{need}, {data.n_bars - 2}] "
            f"(lookback {need + 1}, {data.n_bars} bars)"
        )
    for p in policies:
        p.bind(data)
    sim = BarSimulator(data.open, data.close, rules=rules, device=device)
    e, a, n = len(policies), data.n_assets, data.n_bars - 1 - first
    f64 = torch.float64
    pf = sim.new_portfolios(e)
    t = torch.full((e,), first, dtype=torch.long, device=sim.device)
    eq = sim.equity(pf, t)
    equity = torch.empty((n + 1, e), dtype=f64, device=sim.device)
    weights = torch.empty((n + 1, e, a), dtype=f64, device=sim.device)
    traded = torch.empty((n, e), dtype=f64, device=sim.device)
    fees = torch.empty((n, e), dtype=f64, device=sim.device)
    bought, sold, price, asset_fees = (
        torch.empty((n, e, a), dtype=f64, device=sim.device) for _ in range(4)
    )
    equity[0] = eq
    weights[0] = 0.0
    rows = range(e)
    for step in range(n):
        view = MarketView(
            step=step,
            t=t,
            portfolio=pf,
            equity=eq,
            close=sim.close[t],
            fill_price=sim.fill_price(t),
        )
        target = torch.cat([policies[i].decide(view.row(i)) for i in rows]) if e > 1 else (
            policies[0].decide(view)
        )  # fmt: skip
        fill, eq = sim.step(pf, target, t)
        pf, t = fill.portfolio, t + 1
        equity[step + 1] = eq
        weights[step + 1] = pf.weights(sim.close[t])
        price[step], asset_fees[step] = fill.price, fill.asset_fees
        traded[step], fees[step] = fill.traded_notional, fill.fees
        bought[step], sold[step] = fill.bought, fill.sold
    bar_ms = data.timestamps[first:].astype(np.int64)
    arrays = [x.cpu().numpy() for x in (equity, weights, traded, fees, bought, sold, price,
                                         asset_fees)]  # fmt: skip
    out = []
    for i, p in enumerate(policies):
        eq_i, w_i, tr_i, fe_i, bo_i, so_i, pr_i, af_i = (
            np.ascontiguousarray(x[:, i]) for x in arrays
        )
        metrics = summarize(
            eq_i,
            periods_per_year=data.timeframe.periods_per_year,
            traded_notional=tr_i,
            fees=fe_i,
            weights=w_i[1:],
        )
        result = BacktestResult(
            name=p.name, timestamps=bar_ms, equity=eq_i, weights=w_i, traded_notional=tr_i,
            fees=fe_i, bought=bo_i, sold=so_i, fill_price=pr_i, asset_fees=af_i,
            symbols=data.symbols, metrics=metrics,
        )  # fmt: skip
        out.append(result)
    return out


def run_backtest(
    data: MarketArrays,
    policy: Policy,
    *,
    rules: MarketRules,
    first: int,
    device: torch.device | str = "cpu",
) -> BacktestResult:
    """One policy; see :func:`run_backtests`."""
    return run_backtests(data, [policy], rules=rules, first=first, device=device)[0]
