"""Baseline campaign: every architecture on the same data, split and seeds, one table.

Each model runs :func:`~cappuccino.workflows.supervised.train` with its own
baseline config (model params, feature set, lookback, loss, threshold rule: see
``configs/train``) over the campaign's, except what makes the comparison fair, which
the campaign fixes for all: the data, the label, the split (by dates, so every model's
test windows end in the same bars whatever its warm-up or lookback), the seeds and the
market rules of the backtest. Every run is tracked. The comparison (test metrics at the
validation threshold, parameters, epochs, wall time; mean over seeds) is written as JSON,
Markdown and HTML. With
``backtest.enabled``, each run's test-period signals are also traded through the market
core, and a second table sets them beside the benchmarks over the same bars.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.config.loading import apply_overrides
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import build_market_arrays
from cappuccino.datasets.windows import chronological_splits
from cappuccino.reporting.metrics import view
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table
from cappuccino.tracking import Tracker
from cappuccino.utils.io import atomic_write_bytes, atomic_write_json
from cappuccino.workflows.supervised import BACKTEST_UNITS
from cappuccino.workflows.supervised import train as train_supervised

COLUMNS = tuple(k for k in view("classifier") if k != "loss")  # test metrics shown


SHARED = (
    "data", "windows.label", "windows.fractions", "windows.embargo_bars",
    "windows.split_starts", "backtest", "tracking_uri", "experiment", "phase", "output_dir",
    "seed",
)  # fmt: skip


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def campaign_configs(
    base: SupervisedConfig, own: dict[str, dict[str, Any]], overrides: list[str] | None = None
) -> dict[str, SupervisedConfig]:
    """Each model's run config: its own baseline settings ``own[name]`` (a YAML mapping) over
    ``base``; then the :data:`SHARED` fields from ``base``; then ``overrides``
    (``key.path=value``), which apply to every model."""
    b = base.model_dump(mode="json", by_alias=True)
    out = {}
    for name, mine in own.items():
        d = _deep_merge(b, mine)
        for key in SHARED:
            *parents, leaf = key.split(".")
            src, dst = b, d
            for p in parents:
                src, dst = src[p], dst.setdefault(p, {})
            dst[leaf] = src[leaf]
        d = apply_overrides(d, overrides or [])
        d["model"] = name
        out[name] = SupervisedConfig.model_validate(d)
    return out


def split_dates(bars: pl.DataFrame, cfg: SupervisedConfig) -> tuple[datetime, datetime]:
    """Starts of val and test: ``cfg.windows.split_starts``, or the bar times that its
    fractions and embargo give on ``bars``' calendar."""
    if cfg.windows.split_starts is not None:
        return cfg.windows.split_starts
    ts = bars["timestamp"].dt.epoch("ms").to_numpy()
    s = chronological_splits(
        ts, fractions=cfg.windows.fractions, embargo_bars=cfg.windows.embargo_bars
    )
    return (
        datetime.fromtimestamp(s[1].start_ms / 1000, tz=UTC),
        datetime.fromtimestamp(s[2].start_ms / 1000, tz=UTC),
    )


def run_campaign(
    configs: dict[str, SupervisedConfig],
    *,
    seeds: list[int],
    bars: pl.DataFrame | None = None,
    tracker: Tracker | None = None,
) -> list[dict[str, Any]]:
    """Train each model's config (see :func:`campaign_configs`) for each seed; one summary
    row per model. The bars (and, for the backtests, their market arrays) are read and
    built once, and the split is fixed by dates for every model."""
    if not configs:
        raise ValueError("campaign: no models")
    first = next(iter(configs.values()))
    if bars is None:
        bars = ParquetStore(first.data.store).read_universe(first.data.tf, first.data.symbols)
    starts = split_dates(bars, first)
    market = None
    if first.backtest.enabled:
        market = build_market_arrays(bars, first.feature_set, Timeframe.parse(first.data.tf.label))
    rows = []
    for name, model_cfg in configs.items():
        runs = []
        for seed in seeds:
            cfg = model_cfg.model_copy(
                update={
                    "seed": seed,
                    "output_dir": model_cfg.output_dir / name / f"seed{seed}",
                    "variant": f"seed{seed}",
                    "windows": model_cfg.windows.model_copy(update={"split_starts": starts}),
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
            "feature_set": model_cfg.feature_set,
            "lookback": model_cfg.windows.lookback,
            "loss": model_cfg.train.loss,
            "threshold_rule": model_cfg.train.threshold,
            "test_windows": runs[0]["windows"]["test"],
            "bundles": [r["bundle"] for r in runs],
        }
        for k in COLUMNS:
            row[f"test_{k}"] = statistics.mean(float(r["test"][k]) for r in runs)
        if all("backtest" in r for r in runs):
            bts = [r["backtest"] for r in runs]
            for k in view("headline"):
                row[f"bt_{k}"] = statistics.mean(float(b["policy"][k]) for b in bts)
            row["bt_degenerate"] = sum(bool(b["degenerate"]["degenerate"]) for b in bts)
            row["bt_period"] = bts[0]["period"]
            row["bt_hold_bars"] = bts[0]["hold_bars"]
            row["bt_benchmarks"] = bts[0]["benchmarks"]
            row["bt_reports"] = [b["outputs"]["report"] for b in bts]
        rows.append(row)
    return rows


def backtest_table(rows: list[dict[str, Any]]) -> Table | None:
    """One line per model (means over seeds, with how many seeds were degenerate), then the
    benchmarks over the same bars; None when no row was backtested."""
    done = [r for r in rows if "bt_sharpe" in r]
    if not done:
        return None
    keys = view("headline")
    recs = [{"policy": r["model"], **{k: r[f"bt_{k}"] for k in keys},
             "degenerate": f"{r['bt_degenerate']}/{r['seeds']}"} for r in done]  # fmt: skip
    recs += [{"policy": f"benchmark: {name}", **m, "degenerate": ""}
             for name, m in done[0]["bt_benchmarks"].items()]  # fmt: skip
    return Table.from_records(recs, ["policy", *keys, "degenerate"], labels=True)


def summary_table(rows: list[dict[str, Any]]) -> Table:
    """The comparison: each model's inputs, loss and test metrics."""
    recs = [{"model": r["model"], "parameters": r["parameters"],
             "inputs": f"{r['feature_set']} x {r['lookback']}", "loss": r["loss"],
             "epochs": f"{r['epochs']:.1f}",
             **{f"test {k}": f"{r[f'test_{k}']:.3f}" for k in COLUMNS},
             "seconds": f"{r['seconds']:.1f}"} for r in rows]  # fmt: skip
    cols = ["model", "parameters", "inputs", "loss", "epochs", *[f"test {k}" for k in COLUMNS],
            "seconds"]  # fmt: skip
    return Table.from_records(recs, cols)


def _sections(rows: list[dict[str, Any]]) -> list[Section]:
    out = [Section(summary_table(rows))]
    bt = backtest_table(rows)
    if bt is not None:
        p = next(r for r in rows if "bt_period" in r)
        out.append(Section(bt, heading=(
            "Signals traded through the market core, "
            f"{p['bt_period']['start']} to {p['bt_period']['end']}"
        ), text=(
            "One equal slot per asset, bought at the next open when a signal turns it on, held "
            f"{p['bt_hold_bars']} bars after the last signal. Units: {BACKTEST_UNITS}. "
            "Degenerate: seeds whose policy the degenerate-policy check flags (a copy of a "
            "benchmark, or cash)."
        )))  # fmt: skip
    return out


_INTRO = ("Test metrics at the decision threshold chosen on validation; ROC-AUC and PR-AUC do "
          "not depend on it. Means over seeds.")  # fmt: skip


def write_campaign(
    rows: list[dict[str, Any]], out_dir: Path, *, context: dict[str, Any]
) -> dict[str, str]:
    """campaign.json, campaign.md and campaign.html under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = _sections(rows)
    parts = [f"# Baseline campaign\n\n{context.get('description', '')}\n\n{_INTRO}\n"]
    for sec in sections:
        parts += [f"## {sec.heading}\n" if sec.heading else "", f"{sec.text}\n" if sec.text else "",
                  sec.table.markdown() + "\n"]  # fmt: skip
    md = "\n".join(p for p in parts if p)
    html = render_page("campaign.html.j2", title="Baseline campaign",
                       intro=[context.get("description", ""), _INTRO], sections=sections)  # fmt: skip
    paths = {"json": out_dir / "campaign.json", "markdown": out_dir / "campaign.md",
             "html": out_dir / "campaign.html"}  # fmt: skip
    atomic_write_json(paths["json"], {"context": context, "rows": rows})
    atomic_write_bytes(paths["markdown"], md.encode())
    atomic_write_bytes(paths["html"], html.encode())
    return {k: str(v) for k, v in paths.items()}
