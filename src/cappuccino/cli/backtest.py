"""``cappuccino backtest``: a policy bundle or a benchmark against the benchmarks on one period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cappuccino.cli.render import console, emit_json, fail_cleanly, progress, table


@fail_cleanly
def backtest(
    store: Path = typer.Option(..., "--store", help="Parquet store folder"),
    policy: str = typer.Option(
        ...,
        "--policy",
        help="bundle directory, cash, buy_and_hold, equal_weight[:k] or single:SYMBOL",
    ),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", help="universe (default: all / the bundle's)"
    ),
    timeframe: str = typer.Option("1h", "--timeframe"),
    feature_set: str = typer.Option("cappuccino14", "--feature-set", help="ignored with a bundle"),
    start: str | None = typer.Option(None, "--start", help="first decision bar, ISO 8601 UTC"),
    end: str | None = typer.Option(None, "--end", help="last bar, ISO 8601 UTC"),
    fee_pct: float | None = typer.Option(None, "--fee-pct", help="buy and sell fee, fraction"),
    benchmarks: list[str] | None = typer.Option(
        None, "--benchmark", help="default: cash, buy_and_hold, equal_weight:24, single:BTC/USDT"
    ),
    out: Path = typer.Option(
        Path("runs/backtest"), "--out", help="metrics.json, equity/trades Parquet"
    ),
    report: Path | None = typer.Option(None, "--report", help="write an HTML report here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Backtest through the market core; fills at each next bar's open."""
    import dataclasses

    from cappuccino.evaluation.evaluate import evaluate, write_evaluation
    from cappuccino.market import MarketRules
    from cappuccino.training.rl.bundle import load_bundle
    from cappuccino.training.rl.train import load_market

    target: Any = policy
    if (Path(policy) / "ensemble.json").is_file():  # cappuccino tune best --top K (RL)
        from cappuccino.tuning.export import load_rl_ensemble

        target = load_rl_ensemble(Path(policy))
        first = target.members[0]
        symbols, feature_set = list(first.symbols), first.feature_set
    elif Path(policy).is_dir():
        target = load_bundle(Path(policy))
        if symbols and [s.upper() for s in symbols] != list(target.symbols):
            raise ValueError(
                f"--symbols {symbols} differ from the bundle's symbols {list(target.symbols)}"
            )
        symbols, feature_set = list(target.symbols), target.feature_set
    rules = getattr(target, "rules", None) or MarketRules()
    if fee_pct is not None:
        rules = dataclasses.replace(rules, buy_fee_pct=fee_pct, sell_fee_pct=fee_pct)
    with progress("backtesting", not as_json):
        data = load_market(store, timeframe, symbols, feature_set)
        ev = evaluate(data, target, start=start, end=end, rules=rules, benchmarks=benchmarks)
        paths = write_evaluation(ev, out, report)
    doc = {**ev.to_dict(), "outputs": paths}
    if as_json:
        emit_json(doc)
        return
    rows = [{"policy": r.name, **r.metrics} for r in [ev.policy, *ev.benchmarks]]
    p = ev.context["period"]
    from cappuccino.evaluation.metrics import METRIC_KEYS

    table(
        rows,
        f"Backtest {p['start'][:16]} .. {p['end'][:16]} (Sharpe: simple returns, "
        f"{ev.policy.metrics['periods_per_year']:.0f} bars/yr)",
        ["policy", *METRIC_KEYS[:-1]],
    )
    if ev.verdict is not None:
        flag = "DEGENERATE" if ev.verdict["degenerate"] else "ok"
        console.print(f"degenerate-policy check: {flag}: {ev.verdict['reason']}")
    console.print(f"outputs: {', '.join(paths.values())}")
