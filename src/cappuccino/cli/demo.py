"""``cappuccino demo``: the main job on the bundled sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    console,
    emit_json,
    fail_cleanly,
    progress,
    set_help,
    table,
)
from cappuccino.config.demo import DemoConfig


@fail_cleanly
def demo(
    config: Path | None = typer.Option(
        None, "--config", help="YAML run config (defaults embedded)"
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help=set_help(DemoConfig, "features.feature_set=nn23")
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The main job on the bundled sample, in this order (steps 4 to 7 can be turned off,
    e.g. --set tune.enabled=false):

    1. import and validate the bundled 7-pair hourly sample into a Parquet store, and
    resample it to 4h and 1d (complete buckets only);
    2. gap fill, causal features and labels;
    3. the lookahead audit of every feature column;
    4. a window classifier trained for a few epochs, tracked in a local MLflow store, with
    its test-period signals backtested through the market core;
    5. PPO on the training period, then an out-of-sample backtest against the benchmarks
    (with the degenerate-policy verdict) and an HTML report;
    6. a small Optuna study (SQLite storage) over purged CV, then a second one warm-started
    from its top trials with its ranges narrowed around them;
    7. an A/B of PPO arms and MAPPO over seeds with intervals and a verdict.

    Writes everything under output_dir (default runs/demo)."""
    from cappuccino.config import DemoConfig, load_config
    from cappuccino.workflows.demo import run_demo

    cfg = load_config(DemoConfig, config, overrides)
    with progress("running the demo", not as_json):
        result = run_demo(cfg)
    passed = all(a.passed for a in (result.audit, *result.audits_also))
    if as_json:
        emit_json(result.to_dict())
        if not passed:
            raise typer.Exit(1)
        return
    table(result.summary_rows, f"Cappuccino demo: {cfg.features.feature_set} on the bundled sample")
    if result.resampled:
        by_tf: dict[str, list[dict[str, Any]]] = {}
        for r in result.resampled:
            by_tf.setdefault(r["target"], []).append(r)
        console.print("resampled (complete buckets only): " + "; ".join(
            f"{tf}: {sum(r['complete'] for r in rs):,} bars, {sum(r['incomplete'] for r in rs)} "
            f"partial buckets left out, {sum(r['filled'] for r in rs)} with filled bars"
            for tf, rs in by_tf.items()))  # fmt: skip
    for a in (result.audit, *result.audits_also):
        console.print(
            f"lookahead audit ({a.feature_set}): {'PASS' if a.passed else 'FAIL'} "
            f"({a.cut_points} cut points, {len(a.columns)} columns)"
            + ("" if a.passed else f" violations: {a.violations}")
        )
    if result.supervised is not None:
        sv = result.supervised
        from cappuccino.reporting.metrics import view

        keys = view("classifier")

        table(
            [{"split": k, **{m: sv[k][m] for m in keys}} for k in ("val", "test")],
            f"{sv['model']} ({sv['parameters']:,} parameters), best epoch {sv['best_epoch']}, "
            f"threshold {sv['threshold']:.3f} chosen on val",
        )
        console.print(f"MLflow run {sv['run_name']} ({sv['run_id']}) in {sv['tracking_uri']}")
        if "backtest" in sv:
            bt = sv["backtest"]
            period = f"{bt['period']['start'][:10]} .. {bt['period']['end'][:10]}"
            table(
                [{"policy": f"{sv['model']} signals", **bt["policy"]}]
                + [{"policy": name, **m} for name, m in bt["benchmarks"].items()],
                f"{sv['model']} test-period signals through the market core, {period} "
                f"(equal slots held {bt['hold_bars']} bars; Sharpe annualised x sqrt(8760))",
            )
            v = bt["degenerate"]
            console.print(
                f"degenerate-policy check: {'DEGENERATE' if v['degenerate'] else 'ok'}: "
                f"{v['reason']}"
            )
            console.print(f"report: {bt['outputs']['report']}")
    if result.rl is not None:
        rl = result.rl
        period = f"{rl['test_period']['start'][:10]} .. {rl['test_period']['end'][:10]}"
        table(
            rl["metrics"],
            f"PPO vs benchmarks, out of sample {period} (Sharpe of hourly simple returns, "
            "annualised x sqrt(8760); fees 0.1 %)",
        )
        v = rl["degenerate"]
        console.print(
            f"degenerate-policy check: {'DEGENERATE' if v['degenerate'] else 'ok'}: {v['reason']}"
        )
        console.print(f"report: {rl['outputs']['report']}")
        if "paper" in rl:
            _print_paper(rl["paper"])
    if result.tune is not None:
        st = result.tune
        table(
            [{"state": k, "trials": v} for k, v in sorted(st["counts"].items())],
            f"Optuna study of {cfg.supervised.model}: {st['finished']} trials, median pruning",
        )
        console.print(
            f"best {st['metric']} = {st['best_value']:.4f} (trial {st['best_trial']}), "
            f"bundle {st['best_bundle']}"
        )
        w = st.get("warm")
        if w:
            ws, nw = w["warm_start"], w["narrowed_from"]
            best = "n/a" if w["best_value"] is None else f"{w['best_value']:.4f}"
            console.print(
                f"warm-started study {w['study_name']}: {len(ws['enqueued'])} of study "
                f"{ws['study']}'s top trials run first ({len(ws['skipped'])} did not fit), "
                f"{len(nw['changes'])} ranges narrowed to their span; {w['finished']} trials, "
                f"best {st['metric']} = {best}"
            )
    if result.compare is not None:
        ab = result.compare
        table(
            [{"arm": k, "sharpe": v["sharpe"]["mean"], "sharpe_95_low": v["sharpe"]["low"],
              "sharpe_95_high": v["sharpe"]["high"], "total_return": v["total_return"]["mean"],
              "train_s": v["seconds"], "degenerate_runs": v["degenerate_runs"]}
             for k, v in ab["arms"].items()],
            f"A/B out of sample {ab['period']['start'][:10]} .. {ab['period']['end'][:10]} "
            "(annualised Sharpe of hourly simple returns; mean over seeds, 95 % t interval)",
        )  # fmt: skip
        if t := ab.get("transfer"):
            console.print(f"ft_transfer: encoder pretrained on {t['from']} bars, fine-tuned on "
                          f"{t['to']}")  # fmt: skip
        for line in [*ab["warnings"], *ab["verdicts"]]:
            console.print(f"- {line}")
        e = ab.get("explanation")
        if e:
            top = ", ".join(f"{t['token']} {t['gradient_share']:.1%}" for t in e["tokens"][:3])
            console.print(f"which tokens drive {e['arm']} (seed {e['seed']}, integrated "
                          f"gradients over {e['bars']} bars): {top}; {e['outputs']['html']}")  # fmt: skip
        console.print(f"report: {ab['report']}")
    if result.monitoring is not None:
        mon = result.monitoring
        console.print(f"status: {mon['status'].upper()}; dashboard snapshot {mon['dashboard']}; "
                      f"status report {mon['status_report']}; next actions:")  # fmt: skip
        for i, act in enumerate(mon["next_actions"], 1):
            console.print(f"  {i}. {act}", markup=False, highlight=False)
        console.print(f"live dashboard (http://127.0.0.1:8050/): {mon['live_dashboard']}",
                      markup=False, highlight=False)  # fmt: skip
    console.print(f"outputs in {cfg.output_dir} ({result.seconds:.1f} s)")
    if not passed:
        raise typer.Exit(1)


def _print_paper(p: dict[str, Any]) -> None:
    """The demo's paper session: its status and the check against the backtest."""
    from cappuccino.cli.paper import _print_status

    run = p["run"]
    console.print(
        f"paper session (replay, simulated broker) {run['period']['start'][:16]} .. "
        f"{run['period']['end'][:16]}: {run['bars_processed']} bars, {run['decisions']} "
        f"decisions, {run['orders_submitted']} orders; `cappuccino paper status --state "
        f"{p['state']}`:"
    )
    _print_status(p["status"])
    e = p["equals_backtest"]
    verdict = "EQUALS" if e["equal"] else "DIFFERS FROM"
    console.print(
        f"the paper session {verdict} the backtest of the same bars: {e['fills']} fills vs "
        f"{e['backtest_trades']} trades, final equity {e['final_equity']:,.2f} vs "
        f"{e['backtest_final_equity']:,.2f} (largest relative difference over "
        f"{e['bars']} bars: {e['max_relative_equity_difference']:.1e})"
    )
