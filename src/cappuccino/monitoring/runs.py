"""The latest MLflow runs (experiment, name, state, key metrics), read-only.

A SQLite tracking store is opened through a ``mode=ro`` URI, so a reader never writes to it
or takes its lock; a server (``http://``) is only ever asked, never told. mlflow is imported
when a reader is made, not at package import.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEY_METRICS = ("val_pr_auc", "val_roc_auc", "val_loss", "test_pr_auc", "test_roc_auc",
               "sharpe", "total_return", "max_drawdown", "oos_sharpe", "value")  # fmt: skip
"""Metrics shown first when a run logs them; the rest follow by name."""


def read_only_uri(uri: str) -> str:
    """``uri`` as MLflow should open it to read only: a ``sqlite:///`` file through a
    ``mode=ro`` URI (the file must exist: a reader creates nothing)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "file:"):
        path = Path(uri[len(prefix) :])
        if not path.is_file():
            raise ValueError(f"--mlflow: {uri}: no such file")
        return f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    if uri.startswith(("file:", "/", ".")) and not Path(uri.removeprefix("file:")).is_dir():
        raise ValueError(f"--mlflow: {uri}: no such directory")
    return uri


class RunsReader:
    """The newest runs of one tracking store (a few experiments or all)."""

    def __init__(self, uri: str, experiments: list[str] | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=read_only_uri(uri))
        self.experiments = experiments

    def snapshot(self, limit: int = 20) -> dict[str, Any]:
        exps = {e.experiment_id: e.name for e in self.client.search_experiments()}
        if self.experiments:
            unknown = sorted(set(self.experiments) - set(exps.values()))
            if unknown:
                raise ValueError(f"--experiment: {unknown[0]!r} is not in {self.uri} "
                                 f"(it has {sorted(exps.values())})")  # fmt: skip
            exps = {k: v for k, v in exps.items() if v in self.experiments}
        runs = self.client.search_runs(list(exps), max_results=limit,
                                       order_by=["attributes.start_time DESC"]) if exps else []  # fmt: skip
        return {"tracking_uri": self.uri, "runs": [_run(r, exps) for r in runs]}


def _run(r: Any, exps: dict[str, str]) -> dict[str, Any]:
    m = dict(r.data.metrics)
    keys = [k for k in KEY_METRICS if k in m] + sorted(k for k in m if k not in KEY_METRICS)
    return {
        "run_id": r.info.run_id,
        "experiment": exps.get(r.info.experiment_id, r.info.experiment_id),
        "name": r.info.run_name,
        "state": r.info.status,
        "started": _ms(r.info.start_time),
        "ended": _ms(r.info.end_time),
        "metrics": {k: m[k] for k in keys[:8]},
        "parent": r.data.tags.get("mlflow.parentRunId"),
    }


def _ms(t: int | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t / 1000, UTC).isoformat()


_LOWER_IS_BETTER = ("loss", "drawdown_abs", "seconds", "rss", "mb")


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of metric ``key`` is better (losses, times, memory)."""
    k = key.lower()
    return any(w in k for w in _LOWER_IS_BETTER)


def compare_runs(
    uri: str, experiment: str | None = None, run_ids: list[str] | None = None, limit: int = 10
) -> dict[str, Any]:
    """Runs side by side: every param that differs between them, each metric's final and
    best value (best: the minimum of a loss, time or memory, the maximum otherwise) with its
    step, and the curves of metrics logged at more than one step."""
    reader = RunsReader(uri, [experiment] if experiment else None)
    client = reader.client
    if run_ids:
        from mlflow.exceptions import MlflowException

        runs = []
        for rid in run_ids:
            try:
                runs.append(client.get_run(rid))
            except MlflowException as exc:
                raise ValueError(f"--runs: {rid!r} is not a run in {uri}") from exc
    else:
        exps = {e.experiment_id: e.name for e in client.search_experiments()}
        if experiment:
            exps = {k: v for k, v in exps.items() if v == experiment}
            if not exps:
                raise ValueError(f"--experiment: {experiment!r} is not in {uri}")
        runs = list(client.search_runs(list(exps), max_results=limit,
                                       order_by=["attributes.start_time DESC"]))  # fmt: skip
    if not runs:
        raise ValueError(f"--tracking-uri: {uri}: no runs to compare")
    names = {r.info.run_id: r.info.run_name or r.info.run_id[:8] for r in runs}
    keys = sorted({k for r in runs for k in r.data.params})
    differ = {k: {names[r.info.run_id]: r.data.params.get(k) for r in runs} for k in keys
              if len({r.data.params.get(k) for r in runs}) > 1}  # fmt: skip
    same = {k: runs[0].data.params.get(k) for k in keys if k not in differ}
    metrics: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, Any]] = {}
    for r in runs:
        rid, name = r.info.run_id, names[r.info.run_id]
        for key in sorted(r.data.metrics):
            hist = sorted(client.get_metric_history(rid, key), key=lambda m: (m.step, m.timestamp))
            if not hist:
                continue
            vals = [m.value for m in hist]
            pick = min if lower_is_better(key) else max
            b = pick(range(len(vals)), key=lambda i: vals[i])
            best = {"final": vals[-1], "best": vals[b], "best_step": hist[b].step}
            metrics.setdefault(key, {})[name] = best
            if len(hist) > 1:
                curves.setdefault(key, {})[name] = {"step": [m.step for m in hist], "value": vals}
    exp_names = {e.experiment_id: e.name for e in client.search_experiments()}
    return {
        "tracking_uri": uri,
        "runs": [_run(r, exp_names) for r in runs],
        "params_differ": differ,
        "params_same": same,
        "metrics": metrics,
        "curves": curves,
        "convention": "best: the minimum of a metric named like a loss, a time or a memory "
        "figure, the maximum otherwise; final: the last step logged",
    }


def write_runs_html(doc: dict[str, Any], path: Path) -> Path:
    """The runs report page (plotly embedded once: it works offline)."""
    import plotly.graph_objects as go
    from plotly.io import to_html

    from cappuccino.reporting.pages import Section, render_page
    from cappuccino.reporting.table import Table, cell
    from cappuccino.utils.io import atomic_write_bytes

    names = [r["name"] or r["run_id"][:8] for r in doc["runs"]]
    sections = [Section(Table.from_cells(
        ["run", "experiment", "state", "started", "run id"],
        [[r["name"], r["experiment"], r["state"], (r["started"] or "")[:19], r["run_id"]]
         for r in doc["runs"]]), "Runs")]  # fmt: skip
    if doc["params_differ"]:
        sections.append(Section(Table.from_cells(
            ["param", *names], [[k, *(str(v.get(n)) for n in names)]
                                for k, v in doc["params_differ"].items()]),
            "Parameters that differ"))  # fmt: skip
    rows = []
    for key, per in doc["metrics"].items():
        rows.append([key, *(f"{cell(per[n]['final'])} (best {cell(per[n]['best'])} @ "
                            f"{per[n]['best_step']})" if n in per else "-" for n in names)])  # fmt: skip
    sections.append(Section(Table.from_cells(["metric", *names], rows),
                            "Final and best metrics", doc["convention"]))  # fmt: skip
    figs, first = [], True
    for key, per in doc["curves"].items():
        fig = go.Figure([go.Scatter(x=c["step"], y=c["value"], mode="lines+markers", name=n)
                         for n, c in per.items()])  # fmt: skip
        fig.update_layout(title=key, xaxis_title="step", yaxis_title=key, height=320)
        figs.append(to_html(fig, include_plotlyjs=first, full_html=False))
        first = False
    same = ", ".join(f"{k}={v}" for k, v in doc["params_same"].items())
    html = render_page("base.html.j2", title=f"{len(names)} MLflow runs side by side",
                       context={"tracking URI": doc["tracking_uri"]},
                       intro=[f"Parameters shared by every run: {same or 'none'}."],
                       sections=sections, figures=figs)  # fmt: skip
    atomic_write_bytes(Path(path), html.encode())
    return Path(path)
