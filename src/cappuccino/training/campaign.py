"""Baseline campaign: every architecture on the same data, split and seeds, one table.

Each model runs :func:`~cappuccino.training.supervised_run.train_supervised` with the
shared config (store, feature set, windows, trainer) and its own model overrides; every
run is tracked. The comparison (test metrics at the validation threshold, parameters,
epochs, wall time; mean over seeds) is written as JSON, Markdown and HTML.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.config.supervised import SupervisedConfig
from cappuccino.tracking import Tracker
from cappuccino.training.supervised_run import train_supervised
from cappuccino.utils.io import atomic_write_bytes, atomic_write_json

COLUMNS = ("roc_auc", "pr_auc", "f1_pos", "precision", "recall", "accuracy")


def run_campaign(
    base: SupervisedConfig,
    models: dict[str, dict[str, Any]],
    *,
    seeds: list[int],
    bars: pl.DataFrame | None = None,
    tracker: Tracker | None = None,
) -> list[dict[str, Any]]:
    """Train each ``{model: overrides}`` for each seed; one summary row per model."""
    rows = []
    for name, overrides in models.items():
        runs = []
        for seed in seeds:
            cfg = base.model_copy(
                update={
                    "model": name,
                    "model_config_": overrides,
                    "seed": seed,
                    "output_dir": base.output_dir / name / f"seed{seed}",
                    "variant": f"seed{seed}",
                }
            )
            runs.append(train_supervised(cfg, tracker, bars=bars))
        row: dict[str, Any] = {
            "model": name,
            "parameters": runs[0]["parameters"],
            "seeds": len(runs),
            "epochs": statistics.mean(r["epochs_run"] for r in runs),
            "best_epoch": statistics.mean(r["best_epoch"] for r in runs),
            "seconds": statistics.mean(r["seconds"] for r in runs),
            "test_positive_rate": runs[0]["positive_rate"]["test"],
            "bundles": [r["bundle"] for r in runs],
        }
        for k in COLUMNS:
            row[f"test_{k}"] = statistics.mean(float(r["test"][k]) for r in runs)
        rows.append(row)
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = ["model", "parameters", "epochs", *[f"test {k}" for k in COLUMNS], "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], f"{r['parameters']:,}", f"{r['epochs']:.1f}"]
        cells += [f"{r[f'test_{k}']:.3f}" for k in COLUMNS]
        cells.append(f"{r['seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_campaign(
    rows: list[dict[str, Any]], out_dir: Path, *, context: dict[str, Any]
) -> dict[str, str]:
    """campaign.json, campaign.md and campaign.html under ``out_dir``."""
    import jinja2

    out_dir.mkdir(parents=True, exist_ok=True)
    md = (
        f"# Baseline campaign\n\n{context.get('description', '')}\n\n"
        "Test metrics at the decision threshold chosen on validation; ROC-AUC and PR-AUC do "
        "not depend on it. Means over seeds.\n\n" + _markdown(rows)
    )
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(_HTML)
        .render(rows=rows, columns=COLUMNS, context=context)
    )
    paths = {"json": out_dir / "campaign.json", "markdown": out_dir / "campaign.md",
             "html": out_dir / "campaign.html"}  # fmt: skip
    atomic_write_json(paths["json"], {"context": context, "rows": rows})
    atomic_write_bytes(paths["markdown"], md.encode())
    atomic_write_bytes(paths["html"], html.encode())
    return {k: str(v) for k, v in paths.items()}


_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Baseline campaign</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}</style></head><body>
<h1>Baseline campaign</h1>
<p>{{ context.description }}</p>
<p>Test metrics at the decision threshold chosen on validation (ROC-AUC and PR-AUC do not
depend on it); means over {{ rows[0].seeds if rows else 0 }} seed(s).</p>
<table><tr><th>model</th><th>parameters</th><th>epochs</th>
{% for c in columns %}<th>test {{ c }}</th>{% endfor %}<th>seconds</th></tr>
{% for r in rows %}<tr><td>{{ r.model }}</td><td>{{ "{:,}".format(r.parameters) }}</td>
<td>{{ "%.1f"|format(r.epochs) }}</td>
{% for c in columns %}<td>{{ "%.3f"|format(r["test_" ~ c]) }}</td>{% endfor %}
<td>{{ "%.1f"|format(r.seconds) }}</td></tr>{% endfor %}
</table></body></html>
"""
