"""One registry of the metrics Cappuccino reports: name, label, unit, format, and the views
that show it. Every table, page and summary picks its metrics here, by view, in registry
order; nothing else keeps a list of metric names.

Units and conventions (see :mod:`cappuccino.metrics.returns`): returns are per-bar simple
returns, annualised figures use the bars per year of the timeframe, risk-free 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """A reported metric. ``fmt`` is a :meth:`str.format` spec for one value; ``views``
    name where it is shown (``backtest``: every backtest table; ``headline``: the short
    backtest summary of training runs, campaigns and the demo; ``classifier``: a
    classifier's test metrics; ``history``: logged per epoch)."""

    name: str
    label: str
    unit: str
    fmt: str
    views: frozenset[str]

    def format(self, value: Any) -> str:
        """``value`` formatted; ``n/a`` for None (e.g. CAGR under 30 days of bars)."""
        if value is None:
            return "n/a"
        return self.fmt.format(value)


def _m(name: str, label: str, unit: str, fmt: str, *views: str) -> Metric:
    return Metric(name, label, unit, fmt, frozenset(views))


_ALL = (
    _m("total_return", "Total return", "fraction of starting equity", "{:.2%}", "backtest",
       "headline"),
    _m("cagr", "CAGR", "fraction per year (null under 30 days)", "{:.2%}", "backtest"),
    _m("sharpe", "Sharpe (ann.)", "mean / std (ddof 1) of per-bar returns x sqrt(bars/yr)",
       "{:.3f}", "backtest", "headline"),
    _m("sortino", "Sortino (ann.)", "mean / downside deviation x sqrt(bars/yr)", "{:.3f}",
       "backtest"),
    _m("max_drawdown", "Max drawdown", "fraction below the running peak (<= 0)", "{:.2%}",
       "backtest", "headline"),
    _m("calmar", "Calmar", "CAGR / |max drawdown| (null under 30 days)", "{:.3f}", "backtest"),
    _m("volatility", "Volatility (ann.)", "std of per-bar returns x sqrt(bars/yr)", "{:.2%}",
       "backtest"),
    _m("turnover", "Turnover (x equity / yr)", "traded notional / equity, per year", "{:.1f}",
       "backtest", "headline"),
    _m("fees_paid", "Fees paid (quote)", "quote currency", "{:,.0f}", "backtest", "headline"),
    _m("exposure", "Exposure", "mean invested share of equity", "{:.2%}", "backtest",
       "headline"),
    _m("hit_rate", "Hit rate", "share of bars with a positive return", "{:.2%}", "backtest"),
    _m("loss", "Loss", "the training loss on logits", "{:.4f}", "classifier", "history"),
    _m("accuracy", "Accuracy", "fraction at the decision threshold", "{:.3f}", "classifier",
       "history"),
    _m("precision", "Precision", "macro average at the threshold", "{:.3f}", "classifier",
       "history"),
    _m("recall", "Recall", "macro average at the threshold", "{:.3f}", "classifier", "history"),
    _m("f1", "F1", "macro average at the threshold", "{:.3f}", "history"),
    _m("f1_pos", "F1 (positive)", "positive class at the threshold", "{:.3f}", "classifier",
       "history"),
    _m("roc_auc", "ROC-AUC", "threshold-free", "{:.3f}", "classifier", "history"),
    _m("pr_auc", "PR-AUC", "average precision, threshold-free", "{:.3f}", "classifier",
       "history"),
)  # fmt: skip

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def view(name: str) -> tuple[str, ...]:
    """The metric names of a view, in registry order."""
    names = tuple(m.name for m in _ALL if name in m.views)
    if not names:
        views = sorted({v for m in _ALL for v in m.views})
        raise ValueError(f"metric view: got {name!r}, expected one of {views}")
    return names


def format_value(name: str, value: Any) -> str:
    """``value`` formatted as metric ``name`` (``str(value)`` for a name not registered)."""
    m = METRICS.get(name)
    if m is not None:
        return m.format(value)
    return "n/a" if value is None else str(value)


def units(view_name: str) -> str:
    """One line stating the units of a view's metrics."""
    return "; ".join(f"{METRICS[n].label}: {METRICS[n].unit}" for n in view(view_name))
