"""Backtest a policy and the benchmarks on one period; write metrics, frames and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import torch

from cappuccino.bundles import PolicyBundle
from cappuccino.datasets.market import MarketArrays
from cappuccino.evaluation.backtest import BacktestResult, run_backtests
from cappuccino.evaluation.degenerate import degenerate_verdict
from cappuccino.evaluation.report import render_report, write_report
from cappuccino.market import MarketRules
from cappuccino.policies import Policy, benchmark_policy
from cappuccino.utils.io import atomic_write_json, atomic_write_parquet

DEFAULT_BENCHMARKS = ("cash", "buy_and_hold", "equal_weight:24")


def default_benchmarks(symbols: tuple[str, ...]) -> list[str]:
    """Cash, equal-weight buy-and-hold, equal weight rebalanced daily (24 bars), and
    buy-and-hold of BTC/USDT (or the first symbol)."""
    single = "BTC/USDT" if "BTC/USDT" in symbols else symbols[0]
    return [*DEFAULT_BENCHMARKS, f"single:{single}"]


@dataclass
class Evaluation:
    """The policy's backtest, the benchmarks' and the degenerate-policy verdict."""

    policy: BacktestResult
    benchmarks: list[BacktestResult]
    verdict: dict[str, Any] | None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            **self.policy.metrics,
            "benchmarks": {b.name: b.metrics for b in self.benchmarks},
            "degenerate": self.verdict,
            **self.context,
        }


def period_window(
    data: MarketArrays, start: datetime | str | None, end: datetime | str | None, lookback: int
) -> tuple[MarketArrays, int]:
    """Bars from ``start`` to ``end`` plus ``lookback - 1`` bars of history before ``start``;
    returns the window and the index of the first decision bar inside it."""
    first = data.index_of(start, default=lookback - 1)
    last = data.index_of(end, default=data.n_bars, side="right")
    if first < lookback - 1:
        raise ValueError(
            f"start {start}: the observation needs {lookback - 1} bars of history, "
            f"the data starts {data.describe()['start']}"
        )
    if last - first < 2:
        raise ValueError(f"no bars to backtest between {start} and {end}")
    return data.slice(first - (lookback - 1), last), lookback - 1


def evaluate(
    data: MarketArrays,
    policy: str | PolicyBundle | Policy,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    rules: MarketRules | None = None,
    benchmarks: list[str] | None = None,
    device: torch.device | str = "cpu",
) -> Evaluation:
    """Backtest ``policy`` (a loaded bundle, a benchmark spec or any :class:`Policy`, e.g. a
    classifier's :class:`~cappuccino.policies.SignalPolicy`) and the benchmarks over one
    period, as one batch; every policy but a benchmark gets the degenerate-policy verdict.

    With a bundle, its market rules are used unless ``rules`` are given, and binding its
    policy checks the data against it. Benchmarks read no observation; they start at the
    policy's first decision bar, so every series covers exactly the same bars.
    """
    bundle = policy if isinstance(policy, PolicyBundle) else None
    main: Policy
    if isinstance(policy, PolicyBundle):
        main, rules = policy.policy, rules or policy.rules
    elif isinstance(policy, str):
        main, rules = benchmark_policy(policy, data.symbols), rules or MarketRules()
    else:
        main, rules = policy, rules or MarketRules()
    window, first = period_window(data, start, end, main.lookback)
    specs = benchmarks if benchmarks is not None else default_benchmarks(data.symbols)
    bench = [benchmark_policy(s, data.symbols) for s in specs if s != main.name]
    results = run_backtests(window, [main, *bench], rules=rules, first=first, device=device)
    main_result, bench_results = results[0], results[1:]
    verdict = None
    if not isinstance(policy, str):
        verdict = degenerate_verdict(
            main_result.returns, main_result.weights[1:],
            {b.name: b.returns for b in bench_results},
        )  # fmt: skip
    desc = window.slice(first, window.n_bars).describe()
    context: dict[str, Any] = {
        "period": {"start": desc["start"], "end": desc["end"]},
        "symbols": list(data.symbols),
        "market": rules.to_dict(),
    }
    if bundle is not None:
        context["bundle"] = str(bundle.path)
        context["train_period"] = bundle.train_period
    return Evaluation(policy=main_result, benchmarks=bench_results, verdict=verdict,
                      context=context)  # fmt: skip


def _period_text(period: dict[str, Any] | None) -> str:
    if not period:
        return "n/a (benchmark policy)"
    return f"{period['start']} to {period['end']} ({period['n_bars']:,} bars)"


def write_evaluation(ev: Evaluation, out_dir: Path, report: Path | None = None) -> dict[str, str]:
    """metrics.json, equity.parquet (every policy), trades.parquet (the policy) and the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.json",
        "equity": out_dir / "equity.parquet",
        "trades": out_dir / "trades.parquet",
    }
    atomic_write_json(paths["metrics"], ev.to_dict())
    frames = [
        r.equity_frame().with_columns(pl.lit(r.name).alias("policy"))
        for r in [ev.policy, *ev.benchmarks]
    ]
    atomic_write_parquet(paths["equity"], pl.concat(frames))
    atomic_write_parquet(paths["trades"], ev.policy.trades_frame())
    if report is not None:
        html = render_report(
            ev.policy,
            ev.benchmarks,
            verdict=ev.verdict,
            title=f"Backtest: {ev.policy.name}",
            context={
                "period": f"{ev.context['period']['start']} to {ev.context['period']['end']}",
                "symbols": ", ".join(ev.context["symbols"]),
                "fees": (
                    f"buy {ev.context['market']['buy_fee_pct']:.3%}, "
                    f"sell {ev.context['market']['sell_fee_pct']:.3%}"
                ),
                "training period": _period_text(ev.context.get("train_period")),
            },
        )
        paths["report"] = write_report(report, html)
    return {k: str(v) for k, v in paths.items()}
