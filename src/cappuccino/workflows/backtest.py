"""Backtest a policy and the benchmarks on one period; write metrics, frames and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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


PERIOD_CONVENTION = (
    "bar open times, UTC (as the candles are keyed): start is the first decision bar, end the "
    "last bar; each equity point is valued at its bar's close, each trade fills at its bar's open"
)


def period_window(
    data: MarketArrays, start: datetime | str | None, end: datetime | str | None, lookback: int
) -> tuple[MarketArrays, int, list[str]]:
    """Bars from ``start`` to ``end`` plus ``lookback - 1`` bars of history before ``start``;
    returns the window, the index of the first decision bar inside it, and one note per
    bound that was moved (from what, to what, and why).

    A ``start`` before the first bar with a full observation window (``lookback - 1`` bars of
    history) moves to that bar; an ``end`` after the last bar moves to it. A period with no
    bars left is an error.
    """
    notes: list[str] = []
    earliest = lookback - 1
    first = data.index_of(start, default=earliest)
    last = data.index_of(end, default=data.n_bars, side="right")
    desc = data.describe()
    if start is not None and (first < earliest or _utc(start) < data.datetime_at(0)):
        why = f"the data starts {desc['start']}"
        if earliest > 0:
            why += f" and the observation needs {earliest} bars of history"
        notes.append(f"start moved from {_iso(start)} to {data.datetime_at(earliest).isoformat()}"
                     f": {why}")  # fmt: skip
        first = earliest
    if end is not None and last == data.n_bars and _utc(end) > data.datetime_at(data.n_bars - 1):
        notes.append(f"end moved from {_iso(end)} to {desc['end']}: the data ends there")
    if last - first < 2:
        raise ValueError(
            f"no bars to backtest between {start} and {end}: the data covers {desc['start']} "
            f"to {desc['end']}"
        )
    return data.slice(first - earliest, last), earliest, notes


def _utc(x: datetime | str) -> datetime:
    d = datetime.fromisoformat(x) if isinstance(x, str) else x
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def _iso(x: datetime | str) -> str:
    return _utc(x).isoformat()


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
    window, first, notes = period_window(data, start, end, main.lookback)
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
        "period": {
            "start": desc["start"],
            "end": desc["end"],
            "convention": PERIOD_CONVENTION,
            "adjusted": notes,
        },
        "symbols": list(data.symbols),
        "market": rules.model_dump(mode="json"),
    }
    if bundle is not None:
        context["bundle"] = str(bundle.path)
        context["train_period"] = bundle.train_period
    return Evaluation(policy=main_result, benchmarks=bench_results, verdict=verdict,
                      context=context)  # fmt: skip


def backtest_notes(ev: Evaluation) -> list[str]:
    """What the backtest moved or left out: adjusted period bounds, null metrics."""
    return [*ev.context["period"]["adjusted"], *ev.policy.metrics["notes"]]


def _period_text(period: dict[str, Any] | None) -> str:
    if not period:
        return "n/a (benchmark policy)"
    text = f"{period['start']} to {period['end']} ({period['n_bars']:,} bars"
    if period.get("segments"):
        text += f" in {len(period['segments'])} CPCV segments, fold {period.get('fold')}"
    return text + ")"


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
                    f"buy {ev.context['market']['buy_fee_rate']:.3%}, "
                    f"sell {ev.context['market']['sell_fee_rate']:.3%}"
                ),
                "training period": _period_text(ev.context.get("train_period")),
                "notes": "; ".join(backtest_notes(ev)) or "none",
            },
        )
        paths["report"] = write_report(report, html)
    return {k: str(v) for k, v in paths.items()}
