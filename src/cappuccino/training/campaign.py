"""Baseline campaign: every architecture on the same data, split and seeds, one table.

Each model runs :func:`~cappuccino.training.supervised_run.train_supervised` with the
shared config (store, feature set, windows, trainer) and its own model overrides; every
run is tracked. The comparison (test metrics at the validation threshold, parameters,
epochs, wall time; mean over seeds) is written as JSON, Markdown and HTML. With
``backtest.enabled``, each run's test-period signals are also traded through the market
core, and a second table sets them beside the benchmarks over the same bars.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.config.supervised import SupervisedConfig
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import build_market_arrays
from cappuccino.tracking import Tracker
from cappuccino.training.supervised_run import BACKTEST_KEYS, BACKTEST_UNITS, train_supervised
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
    """Train each ``{model: overrides}`` for each seed; one summary row per model. The bars
    (and, for the backtests, their market arrays) are read and built once for all runs."""
    if bars is None:
        bars = ParquetStore(base.data.store).read_universe(base.data.tf, base.data.symbols)
    market = None
    if base.backtest.enabled:
        market = build_market_arrays(bars, base.feature_set, Timeframe.parse(base.data.tf.label))
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
            runs.append(train_supervised(cfg, tracker, bars=bars, market=market))
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
        if all("backtest" in r for r in runs):
            bts = [r["backtest"] for r in runs]
            for k in BACKTEST_KEYS:
                row[f"bt_{k}"] = statistics.mean(float(b["policy"][k]) for b in bts)
            row["bt_degenerate"] = sum(bool(b["degenerate"]["degenerate"]) for b in bts)
            row["bt_period"] = bts[0]["period"]
            row["bt_hold_bars"] = bts[0]["hold_bars"]
            row["bt_benchmarks"] = bts[0]["benchmarks"]
            row["bt_reports"] = [b["outputs"]["report"] for b in bts]
        rows.append(row)
    return rows


BT_HEAD = ("total return", "Sharpe (ann.)", "max drawdown", "turnover (x/yr)", "exposure",
           "fees (quote)")  # fmt: skip


def backtest_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per model (means over seeds, with how many seeds were degenerate), then the
    benchmarks over the same bars; empty when no row was backtested."""
    done = [r for r in rows if "bt_sharpe" in r]
    if not done:
        return []

    def cells(m: dict[str, Any]) -> list[str]:
        return [f"{m['total_return']:.2%}", f"{m['sharpe']:.2f}", f"{m['max_drawdown']:.2%}",
                f"{m['turnover']:.1f}", f"{m['exposure']:.1%}", f"{m['fees_paid']:,.0f}"]  # fmt: skip

    out = []
    for r in done:
        means = {k: r[f"bt_{k}"] for k in BACKTEST_KEYS}
        out.append([r["model"], *cells(means), f"{r['bt_degenerate']}/{r['seeds']}"])
    for name, m in done[0]["bt_benchmarks"].items():
        out.append([f"benchmark: {name}", *cells(m), ""])
    return out


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = ["model", "parameters", "epochs", *[f"test {k}" for k in COLUMNS], "seconds"]
    body = []
    for r in rows:
        cells = [r["model"], f"{r['parameters']:,}", f"{r['epochs']:.1f}"]
        cells += [f"{r[f'test_{k}']:.3f}" for k in COLUMNS]
        cells.append(f"{r['seconds']:.1f}")
        body.append(cells)
    lines = _md_table(head, body)
    bt = backtest_table(rows)
    if bt:
        p = next(r for r in rows if "bt_period" in r)
        lines += [
            "",
            f"## Signals traded through the market core, {p['bt_period']['start']} to "
            f"{p['bt_period']['end']}",
            "",
            f"One equal slot per asset, bought at the next open when a signal turns it on, held "
            f"{p['bt_hold_bars']} bars after the last signal. Units: {BACKTEST_UNITS}. "
            "Degenerate: seeds whose policy the degenerate-policy check flags (a copy of a "
            "benchmark, or cash).",
            "",
            *_md_table(["policy", *BT_HEAD, "degenerate"], bt),
        ]
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
        .render(
            rows=rows,
            columns=COLUMNS,
            context=context,
            bt=backtest_table(rows),
            bt_head=BT_HEAD,
            units=BACKTEST_UNITS,
            period=next((r for r in rows if "bt_period" in r), None),
        )
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
</table>
{% if bt %}<h2>Signals traded through the market core, {{ period.bt_period.start }} to
{{ period.bt_period.end }}</h2>
<p>One equal slot per asset, bought at the next open when a signal turns it on, held
{{ period.bt_hold_bars }} bars after the last signal. Units: {{ units }}. Degenerate: seeds
whose policy the degenerate-policy check flags (a copy of a benchmark, or cash).</p>
<table><tr><th>policy</th>{% for h in bt_head %}<th>{{ h }}</th>{% endfor %}<th>degenerate</th></tr>
{% for line in bt %}<tr>{% for c in line %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}</body></html>
"""
