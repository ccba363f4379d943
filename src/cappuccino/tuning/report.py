"""What a study found: top trials, parameter importance, optimisation history, failures;
as JSON and an HTML page (plotly, embedded once, works offline)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cappuccino.config.tuning import TuneConfig
from cappuccino.tuning.study import open_study
from cappuccino.tuning.tune import summarize
from cappuccino.utils.io import atomic_write_bytes


def study_report(cfg: TuneConfig, top: int = 10) -> dict[str, Any]:
    """``summarize`` plus the top trials, importances (PED-ANOVA, Optuna's default, over
    complete trials; needs two with different parameters), the history (value and best so
    far per complete trial) and failed trials."""
    import optuna

    study = open_study(cfg, 0)
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
    return summarize(cfg) | {
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
                "error": t.user_attrs.get("error"),
                "skipped": t.user_attrs.get("skipped"),
            }
            for t in trials
            if t.state == optuna.trial.TrialState.FAIL
        ],
    }


def write_report_html(report: dict[str, Any], path: Path) -> Path:
    import jinja2
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
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(_PAGE)
        .render(
            r=report,
            history=to_html(fig_h, include_plotlyjs=True, full_html=False),
            importance=to_html(fig_i, include_plotlyjs=False, full_html=False) if imp else "",
        )
    )
    atomic_write_bytes(Path(path), html.encode())
    return Path(path)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Study {{ r.study_name }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
code{font-size:.85em}</style></head><body>
<h1>Study {{ r.study_name }}</h1>
<p>Storage <code>{{ r.storage }}</code>; {{ r.direction }} <b>{{ r.metric }}</b> (value at each
trial's kept epoch). Trials by state:
{% for k, v in r.counts|dictsort %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
<p>Best: trial {{ r.best_trial }}, {{ r.metric }} = {{ r.best_value }};
bundle <code>{{ r.best_bundle }}</code>.</p>
{{ history|safe }}
{% if importance %}{{ importance|safe }}{% else %}<p>Parameter importance needs two complete
trials with different parameters.</p>{% endif %}
<h2>Top trials</h2>
<table><tr><th>trial</th><th>{{ r.metric }}</th><th>best epoch</th><th>seconds</th><th>parameters</th></tr>
{% for t in r.top_trials %}<tr><td>{{ t.trial }}</td><td>{{ "%.4f"|format(t.value) }}</td>
<td>{{ t.best_epoch }}</td><td>{{ "%.1f"|format(t.seconds or 0) }}</td>
<td><code>{{ t.params }}</code></td></tr>{% endfor %}</table>
{% if r.failed %}<h2>Failed trials</h2><table><tr><th>trial</th><th>error</th></tr>
{% for f in r.failed %}<tr><td>{{ f.trial }}</td><td><code>{{ f.error or f.skipped or
"worker died (heartbeat stopped); re-queued" }}</code></td></tr>{% endfor %}</table>{% endif %}
</body></html>
"""
