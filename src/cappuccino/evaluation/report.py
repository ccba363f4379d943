"""HTML backtest report: equity against benchmarks, drawdown, weights, metrics, verdict.

plotly draws the figures (its JavaScript is embedded once, so the file works offline);
the page is the shared ``backtest.html.j2`` (:mod:`cappuccino.reporting.pages`), the
metrics those of the registry's ``backtest`` view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cappuccino.evaluation.backtest import BacktestResult
from cappuccino.metrics.returns import drawdown
from cappuccino.reporting.metrics import view
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table
from cappuccino.utils.io import atomic_write_bytes


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
    table = Table.from_records(
        [{"policy": r.name, **r.metrics} for r in [policy, *benchmarks]],
        ["policy", *view("backtest")],
        labels=True,
    )
    m = policy.metrics
    return render_page(
        "backtest.html.j2",
        title=title,
        context=context,
        verdict=verdict,
        sections=[Section(table, "Metrics", (
            "Returns are simple per-bar returns; Sharpe and Sortino are annualised with "
            f"{m['periods_per_year']:.0f} bars per year (risk-free 0); drawdowns are fractions "
            f"of the running peak; {m['n_bars']} bars, fills at each next bar's open."
        ))],
        figures=figures,
    )  # fmt: skip


def write_report(path: Path, html: str) -> Path:
    atomic_write_bytes(path, html.encode())
    return path
