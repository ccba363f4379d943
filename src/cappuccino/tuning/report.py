"""What a study found: top trials, parameter importance, optimisation history, failures;
as JSON and an HTML page (plotly, embedded once, works offline)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cappuccino.config.tuning import TuneConfig
from cappuccino.datasets.splits import cpcv_paths, group_bounds
from cappuccino.evaluation.overfitting import deflated_sharpe, pbo_cscv, per_period_sharpe
from cappuccino.metrics.returns import sharpe_ratio
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table
from cappuccino.tuning.rl_objective import cv_folds
from cappuccino.tuning.study import HEARTBEAT_LOST
from cappuccino.tuning.tune import load_study, summarize
from cappuccino.utils.io import atomic_write_bytes


def study_report(cfg: TuneConfig, top: int = 10) -> dict[str, Any]:
    """``summarize`` plus the top trials, importances (PED-ANOVA, Optuna's default, over
    complete trials; needs two with different parameters), the history (value and best so
    far per complete trial) and failed trials."""
    import optuna

    cfg, study = load_study(cfg)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    sign = -1.0 if cfg.direction == "maximize" else 1.0
    best_first = sorted(complete, key=lambda t: sign * float(t.value or 0.0))
    importance: dict[str, float] = {}
    if len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        importance = {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            ).items()
        }
    history, best = [], math.nan
    for t in sorted(complete, key=lambda t: t.number):
        v = float(t.value or 0.0)
        best = v if math.isnan(best) else (max(best, v) if sign < 0 else min(best, v))
        history.append({"trial": t.number, "value": v, "best": best})
    lost = set(study.user_attrs.get("heartbeat_lost", []))  # failed by optuna's own sweep too
    extra: dict[str, Any] = {}
    if cfg.kind == "rl":
        finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        extra = rl_statistics(cfg, complete, len(finished))
    return (
        summarize(cfg)
        | extra
        | {
            "top_trials": [
                {
                    "trial": t.number,
                    "value": t.value,
                    "params": t.params,
                    "best_epoch": t.user_attrs.get("best_epoch"),
                    "bundle": t.user_attrs.get("bundle"),
                    "test": t.user_attrs.get("test"),
                    "seconds": t.duration.total_seconds() if t.duration else None,
                }
                for t in best_first[:top]
            ],
            "importance": importance,
            "history": history,
            "pruned_at": {
                t.number: max(t.intermediate_values) if t.intermediate_values else None
                for t in trials
                if t.state == optuna.trial.TrialState.PRUNED
            },
            "failed": [
                {
                    "trial": t.number,
                    "error": t.user_attrs.get("error")
                    or (HEARTBEAT_LOST if t.number in lost else None),
                    "skipped": t.user_attrs.get("skipped"),
                }
                for t in trials
                if t.state == optuna.trial.TrialState.FAIL
            ],
        }
    )


def rl_statistics(cfg: TuneConfig, complete: list[Any], n_tried: int) -> dict[str, Any]:
    """Out-of-sample statistics of an RL study from its trials' ``oos_returns.parquet``.

    Each trial's per-bar returns are averaged over the folds that tested the bar (a bar is
    tested by ``C(N-1, k-1)`` folds), giving one series per trial over the same bars.
    ``pbo``: CSCV over those series (trials as strategies). ``deflated_sharpe``: the best
    trial's series, deflated for ``n_tried`` trials and the variance of the trials'
    Sharpe ratios. ``cpcv``: the best trial's Sharpe on each CPCV backtest path (every
    group tested once, by a policy that never trained on it). Sharpe ratios here are
    annualised for display; the DSR works per period.
    """
    import numpy as np
    import polars as pl

    frames = {t.number: pl.read_parquet(t.user_attrs["oos_returns"]) for t in complete}
    if not frames:
        return {}
    series = [
        f.group_by("bar").agg(pl.col("return").mean().alias(f"t{n}")).sort("bar")
        for n, f in frames.items()
    ]
    wide = series[0]
    for s_ in series[1:]:
        wide = wide.join(s_, on="bar", how="inner")
    m = wide.drop("bar").to_numpy()
    n_total = int(complete[0].user_attrs["n_bars"])
    ppy = float(complete[0].user_attrs["periods_per_year"])
    srs = per_period_sharpe(m)
    best_col = int(np.argmax(srs)) if len(complete) else 0
    out: dict[str, Any] = {
        "units": "per-bar simple returns averaged over the folds testing each bar; "
        "annualised Sharpe x sqrt(bars per year); DSR and PSR are probabilities",
        "bars": int(m.shape[0]),
        "trial_sharpes": {n: float(x) * ppy**0.5 for n, x in zip(frames, srs, strict=True)},
    }
    out["pbo"] = {"pbo": None, "reason": "needs 2 complete trials over 32 bars or more"}
    if m.shape[1] >= 2 and m.shape[0] >= 32:
        blocks = 16 if m.shape[0] >= 64 else 8
        pbo = pbo_cscv(m, n_blocks=blocks)
        out["pbo"] = {k: pbo[k] for k in ("pbo", "n_splits", "n_blocks", "n_trials",
                                          "prob_oos_loss", "degradation_slope")}  # fmt: skip
    var = float(np.var(srs, ddof=1)) if srs.size >= 2 else 0.0
    dsr = deflated_sharpe(m[:, best_col], n_trials=max(n_tried, 1), var_trial_sharpe=var)
    out["deflated_sharpe"] = dsr | {"trial": list(frames)[best_col]}
    # CPCV paths of the best trial
    best = frames[list(frames)[best_col]]
    bounds = group_bounds(n_total, cfg.cv.n_groups)
    edges = np.array([b for _, b in bounds])
    group = np.searchsorted(edges, best["bar"].to_numpy(), side="right")
    best = best.with_columns(pl.Series("group", group))
    paths = cpcv_paths(cfg.cv.n_groups, cfg.cv.n_test_groups)
    n_folds = len(cv_folds(cfg, n_total))
    path_sr = []
    for path in paths:
        if int(path.max()) >= n_folds:
            continue  # max_folds ran fewer folds than the paths need
        parts = [best.filter((pl.col("fold") == int(f)) & (pl.col("group") == g))["return"]
                 for g, f in enumerate(path)]  # fmt: skip
        path_sr.append(sharpe_ratio(pl.concat(parts).to_numpy(), ppy))
    out["cpcv"] = {
        "paths": len(path_sr), "path_sharpes": path_sr,
        "mean": float(np.mean(path_sr)) if path_sr else None,
        "std": float(np.std(path_sr, ddof=1)) if len(path_sr) > 1 else None,
        "min": float(np.min(path_sr)) if path_sr else None,
    }  # fmt: skip
    return out


def write_report_html(report: dict[str, Any], path: Path) -> Path:
    import plotly.graph_objects as go
    from plotly.io import to_html

    hist = report["history"]
    fig_h = go.Figure(
        [
            go.Scatter(x=[h["trial"] for h in hist], y=[h["value"] for h in hist],
                       mode="markers", name="trial"),
            go.Scatter(x=[h["trial"] for h in hist], y=[h["best"] for h in hist],
                       mode="lines", name="best so far"),
        ]
    )  # fmt: skip
    fig_h.update_layout(
        title=f"{report['metric']} by trial (complete trials)",
        xaxis_title="trial", yaxis_title=report["metric"], height=380,
    )  # fmt: skip
    imp = sorted(report["importance"].items(), key=lambda kv: kv[1])
    fig_i = go.Figure(go.Bar(x=[v for _, v in imp], y=[k for k, _ in imp], orientation="h"))
    fig_i.update_layout(title="parameter importance (PED-ANOVA)", height=max(250, 28 * len(imp)))
    top = Table.from_cells(
        ["trial", report["metric"], "best epoch", "seconds", "parameters"],
        [[t["trial"], f"{t['value']:.4f}", t["best_epoch"], f"{t['seconds'] or 0:.1f}",
          str(t["params"])] for t in report["top_trials"]],
    )  # fmt: skip
    sections = [Section(top, "Top trials")]
    if report["failed"]:
        failed = Table.from_cells(["trial", "error"], [
            [f["trial"], f["error"] or f.get("skipped") or
             "worker died (heartbeat stopped); re-queued"] for f in report["failed"]])  # fmt: skip
        sections.append(Section(failed, "Failed trials"))
    html = render_page(
        "study.html.j2", title=f"Study {report['study_name']}", r=report, sections=sections,
        history=to_html(fig_h, include_plotlyjs=True, full_html=False),
        importance=to_html(fig_i, include_plotlyjs=False, full_html=False) if imp else "",
    )  # fmt: skip
    atomic_write_bytes(Path(path), html.encode())
    return Path(path)
