"""``cappuccino backtest``: a policy bundle or a benchmark against the benchmarks on one period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    TIMEFRAME_HELP,
    console,
    emit_json,
    fail_cleanly,
    parse_time,
    progress,
    symbol_list,
    table,
)


@fail_cleanly
def backtest(
    store: Path = typer.Option(..., "--store", help="Parquet store folder"),
    policy: str = typer.Option(
        ...,
        "--policy",
        help="bundle directory, cash, buy_and_hold, equal_weight[:k] or single:SYMBOL",
    ),
    symbols: list[str] | None = typer.Option(
        None,
        "--symbols",
        "-s",
        help="universe: repeat or comma-separate (default: all / the bundle's)",
    ),
    timeframe: str = typer.Option("1h", "--timeframe", help=TIMEFRAME_HELP),
    start: str | None = typer.Option(None, "--start", help="first decision bar, ISO 8601 UTC"),
    end: str | None = typer.Option(None, "--end", help="last bar, ISO 8601 UTC"),
    fee: str | None = typer.Option(
        None, "--fee", help="buy and sell fee rate: 0.001 or 0.1% (at most 5%)"
    ),
    benchmarks: list[str] | None = typer.Option(
        None, "--benchmark", help="default: cash, buy_and_hold, equal_weight:24, single:BTC/USDT"
    ),
    out: Path = typer.Option(
        Path("runs/backtest"), "--out", help="metrics.json, equity/trades Parquet"
    ),
    report: Path | None = typer.Option(None, "--report", help="write an HTML report here"),
    allow_version_mismatch: bool = typer.Option(
        False,
        "--allow-version-mismatch",
        help="load a bundle written with other library versions (the differences are logged)",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Backtest through the market core; fills at each next bar's open."""
    from pydantic import ValidationError

    from cappuccino.bundles import load_policy
    from cappuccino.datasets.market import load_market
    from cappuccino.market import MarketRules
    from cappuccino.workflows.backtest import backtest_notes, evaluate, write_evaluation

    symbols = symbol_list(symbols)
    first, last = parse_time(start, "--start"), parse_time(end, "--end")
    target: Any = policy
    rules = MarketRules()
    feature_set: str | None = None  # benchmarks read prices only: every bar of the window
    if Path(policy).is_dir():  # an RL bundle or an RL ensemble (tune best --top K)
        target = load_policy(Path(policy), allow_version_mismatch=allow_version_mismatch)
        if symbols and [s.upper() for s in symbols] != list(target.symbols):
            raise ValueError(
                f"--symbols {symbols} differ from the bundle's symbols {list(target.symbols)}"
            )
        symbols, feature_set, rules = list(target.symbols), target.feature_set, target.rules
    if fee is not None:
        try:
            rules = rules.with_fee(fee)
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"--fee: got {fee!r}, expected a rate in [0, 0.05] such as 0.001 "
                             "or 0.1%") from exc  # fmt: skip
    with progress("backtesting", not as_json):
        data = load_market(store, timeframe, symbols, feature_set)
        ev = evaluate(data, target, start=first, end=last, rules=rules, benchmarks=benchmarks)
        paths = write_evaluation(ev, out, report)
    doc = {**ev.to_dict(), "outputs": paths}
    if as_json:
        emit_json(doc)
        return
    rows = [{"policy": r.name, **r.metrics} for r in [ev.policy, *ev.benchmarks]]
    p = ev.context["period"]
    from cappuccino.reporting.metrics import view

    table(
        rows,
        f"Backtest {p['start'][:16]} .. {p['end'][:16]} (Sharpe: simple returns, "
        f"{ev.policy.metrics['periods_per_year']:.0f} bars/yr)",
        ["policy", *view("backtest")[:-1]],
    )
    for note in backtest_notes(ev):
        console.print(f"note: {note}")
    if ev.verdict is not None:
        flag = "DEGENERATE" if ev.verdict["degenerate"] else "ok"
        console.print(f"degenerate-policy check: {flag}: {ev.verdict['reason']}")
    console.print(f"outputs: {', '.join(paths.values())}")
