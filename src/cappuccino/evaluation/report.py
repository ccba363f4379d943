"""HTML backtest report: equity against benchmarks, drawdown, weights, metrics, verdict.

plotly draws the figures (its JavaScript is embedded once, so the file works offline);
jinja2 lays out the page from ``templates/backtest.html.j2``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cappuccino.evaluation.backtest import BacktestResult
from cappuccino.metrics.returns import drawdown
from cappuccino.utils.io import atomic_write_bytes

_METRICS = [
    ("total_return", "Total return", "{:.2%}"),
    ("cagr", "CAGR", "{:.2%}"),
    ("sharpe", "Sharpe (ann.)", "{:.2f}"),
    ("sortino", "Sortino (ann.)", "{:.2f}"),
    ("max_drawdown", "Max drawdown", "{:.2%}"),
    ("calmar", "Calmar", "{:.2f}"),
    ("volatility", "Volatility (ann.)", "{:.2%}"),
    ("turnover", "Turnover (x equity / yr)", "{:.1f}"),
    ("fees_paid", "Fees paid (quote)", "{:,.0f}"),
    ("exposure", "Exposure", "{:.2%}"),
    ("hit_rate", "Hit rate", "{:.2%}"),
]


def _dates(ms: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(int(x) / 1000, tz=UTC) for x in ms]


def render_report(
    policy: BacktestResult,
    benchmarks: list[BacktestResult],
    *,
    verdict: dict[str, Any] | None,
    title: str,
    context: dict[str, Any],
) -> str:
    """The report page as an HTML string."""
    import jinja2
    import plotly.graph_objects as go

    x = _dates(policy.timestamps)
    eq = go.Figure()
    for r in [policy, *benchmarks]:
        eq.add_trace(go.Scatter(x=x, y=r.equity / r.equity[0], name=r.name, mode="lines"))
    eq.update_layout(title="Equity (start = 1)", yaxis_title="growth of 1", height=420)
    dd = go.Figure()
    for r in [policy, *benchmarks]:
        dd.add_trace(go.Scatter(x=x, y=drawdown(r.equity), name=r.name, mode="lines"))
    dd.update_layout(title="Drawdown from peak", yaxis_tickformat=".0%", height=320)
    wf = go.Figure()
    for i, s in enumerate(policy.symbols):
        wf.add_trace(go.Scatter(x=x, y=policy.weights[:, i], name=s, stackgroup="w", mode="none"))
    wf.update_layout(
        title=f"{policy.name}: weights at each close", yaxis_tickformat=".0%", height=320
    )
    figures = [
        eq.to_html(full_html=False, include_plotlyjs=True),
        dd.to_html(full_html=False, include_plotlyjs=False),
        wf.to_html(full_html=False, include_plotlyjs=False),
    ]
    rows = []
    for r in [policy, *benchmarks]:
        rows.append([r.name] + [fmt.format(r.metrics[k]) for k, _, fmt in _METRICS])
    template = resources.files("cappuccino.evaluation").joinpath("templates/backtest.html.j2")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(template.read_text()).render(
        title=title,
        headers=["policy"] + [label for _, label, _ in _METRICS],
        rows=rows,
        verdict=verdict,
        figures=figures,
        context=context,
        periods_per_year=policy.metrics["periods_per_year"],
        n_bars=policy.metrics["n_bars"],
    )
    return page


def write_report(path: Path, html: str) -> Path:
    atomic_write_bytes(path, html.encode())
    return path
