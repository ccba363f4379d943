"""``cappuccino rl explain``: which (asset, feature) and portfolio tokens drive an RL
bundle's actions over a period (:mod:`cappuccino.evaluation.explain`).

The observations are the ones the policy sees in the backtest of the period (the same
window, market rules and book as ``cappuccino backtest``), recorded bar by bar. Outputs in
``out``: ``explain.json`` (every token, ranked), ``explain.md`` (the table),
``attention.png`` and ``gradients.png`` (asset x feature heat maps; attention for an
FT-Transformer policy only) and ``explain.html`` (both maps and the table).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cappuccino.bundles import load_policy
from cappuccino.datasets.market import MarketArrays, load_market
from cappuccino.evaluation.explain import IG_STEPS, Explanation, explain
from cappuccino.policies import MarketView, NetPolicy
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table
from cappuccino.utils.io import atomic_write_bytes, atomic_write_json
from cappuccino.workflows.backtest import evaluate


class _Recorder:
    """A network policy that keeps every observation it decides on."""

    def __init__(self, inner: NetPolicy) -> None:
        self.inner, self.name = inner, inner.name
        self.seen: list[torch.Tensor] = []

    @property
    def lookback(self) -> int:
        return self.inner.lookback

    def bind(self, data: MarketArrays) -> None:
        self.inner.bind(data)

    def decide(self, view: MarketView) -> torch.Tensor:
        self.seen.append(self.inner.observe(view).detach().float().cpu())
        return self.inner.decide(view)


def explain_bundle(
    bundle: Path, store: Path, out: Path, *, start: datetime | None = None,
    end: datetime | None = None, data: MarketArrays | None = None, max_bars: int | None = None,
    steps: int = IG_STEPS,
) -> dict[str, Any]:  # fmt: skip
    """Explain ``bundle`` over ``start`` .. ``end`` of ``store`` (default: the bars after
    its training period, as ``backtest`` chooses them); write the outputs to ``out``.
    ``max_bars``: average over that many bars evenly spaced over the period (all by
    default); ``steps``: integrated-gradients steps."""
    pb = load_policy(bundle)
    if pb.kind != "rl" or not isinstance(pb.policy, NetPolicy):
        raise ValueError(f"{bundle}: an {pb.kind} bundle; `rl explain` explains one policy "
                         "(explain an ensemble's members one by one)")  # fmt: skip
    if data is None:
        data = load_market(store, pb.timeframe, list(pb.symbols), pb.feature_set)
    rec = _Recorder(pb.policy)
    if start is None and pb.train_period and pb.train_period.get("end"):
        start = datetime.fromisoformat(str(pb.train_period["end"]))
    ev = evaluate(data, rec, start=start, end=end, rules=pb.rules, benchmarks=[])
    obs = torch.cat(rec.seen)
    if max_bars is not None and obs.shape[0] > max_bars:
        obs = obs[torch.linspace(0, obs.shape[0] - 1, max_bars).round().long()]
    e = explain(pb.policy.net, obs, pb.symbols, tuple(data.feature_names), pb.policy.lookback,
                steps=steps)  # fmt: skip
    doc = {"bundle": str(bundle), "period": ev.context["period"], **e.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "explain.json", doc)
    atomic_write_bytes(out / "explain.md", (markdown(doc) + "\n").encode())
    from cappuccino.reporting.figures import heatmap_figure, save_png

    files = {"json": out / "explain.json", "markdown": out / "explain.md"}
    if e.attention_map is not None:
        files["attention"] = save_png(heatmap_figure(
            e.attention_map, list(e.symbols), list(e.features),
            "[CLS] attention per (asset, feature) token"), out / "attention.png")  # fmt: skip
    files["gradients"] = save_png(heatmap_figure(
        e.gradient_map, list(e.symbols), list(e.features),
        "share of |integrated gradients| per (asset, feature) token"), out / "gradients.png")  # fmt: skip
    atomic_write_bytes(out / "explain.html", html(doc, e).encode())
    files["html"] = out / "explain.html"
    doc["outputs"] = {k: str(v) for k, v in files.items()}
    return doc


def table(doc: dict[str, Any], top: int = 20) -> Table:
    rows = [[t["rank"], t["token"], t["kind"], f"{t['gradient']:.4g}", f"{t['gradient_share']:.1%}",
             "n/a" if t["attention"] is None else f"{t['attention']:.4f}"]
            for t in doc["tokens"][:top]]  # fmt: skip
    return Table(title=f"Tokens by attribution ({doc['bars']} bars)",
                 header=("rank", "token", "kind", "|IG|", "share", "[CLS] attention"),
                 rows=tuple(tuple(str(c) for c in r) for r in rows),
                 numeric=(True, False, False, True, True, True),
                 notes=(doc["units"],))  # fmt: skip


def markdown(doc: dict[str, Any]) -> str:
    p = doc["period"]
    return "\n".join([f"# Explanation of {doc['bundle']}", "",
                      f"Period {p['start']} .. {p['end']}.", "", table(doc).markdown()])  # fmt: skip


def html(doc: dict[str, Any], e: Explanation) -> str:
    import plotly.graph_objects as go
    from plotly.io import to_html

    figs, first = [], True
    maps = [("share of |integrated gradients|", e.gradient_map)]
    if e.attention_map is not None:
        maps.append(("[CLS] attention", e.attention_map))
    for title, m in maps:
        fig = go.Figure(
            go.Heatmap(z=m, x=list(e.features), y=list(e.symbols), colorscale="Viridis")
        )
        fig.update_layout(title=title, height=120 + 40 * len(e.symbols))
        figs.append(to_html(fig, include_plotlyjs=first, full_html=False))
        first = False
    p = doc["period"]
    return render_page("base.html.j2", title="Which tokens drive the policy's actions",
                       context={"bundle": doc["bundle"], "period": f"{p['start']} .. {p['end']}",
                                "completeness error": f"{doc['completeness_error']:.2e}"},
                       sections=[Section(table(doc, top=len(doc["tokens"])))], figures=figs)  # fmt: skip
