"""A supervised training run: store -> features + label -> windows -> model -> fit ->
figures and bundle (:mod:`cappuccino.bundles.supervised`), tracked. The workflow
(:mod:`cappuccino.workflows.supervised`) adds the test-period signal backtest through
``after_fit``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from cappuccino.bundles.supervised import save_bundle
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.windows import WindowData, build_windows
from cappuccino.features.labels import ForwardReturnLabel, LabelSpec, parse_label
from cappuccino.features.sets import get_feature_set
from cappuccino.features.table import build_feature_table
from cappuccino.models import count_parameters
from cappuccino.models.registry import build_model
from cappuccino.models.summary import write_model_summary
from cappuccino.reporting.figures import classifier_figures
from cappuccino.tracking import Tracker, run_name
from cappuccino.training.supervised import FitResult, fit
from cappuccino.utils.devices import default_device
from cappuccino.utils.provenance import environment, git_commit, library_versions
from cappuccino.utils.seeding import seed_everything

log = logging.getLogger(__name__)


def binary_target(table: pl.DataFrame, spec: LabelSpec) -> tuple[pl.DataFrame, str]:
    """The 0/1 target of a label spec: ``label_buy_<h>`` for a forward-return label; for a
    triple-barrier label, 1 when the take-profit barrier is hit first (``label_tb_hit_<h>``)."""
    if isinstance(spec, ForwardReturnLabel):
        return table, spec.columns[1]
    src = spec.columns[0]
    name = src.replace("label_tb_", "label_tb_hit_")
    return table.with_columns((pl.col(src) == 1).cast(pl.Float64).alias(name)), name


def feature_table(cfg: SupervisedConfig, bars: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """The feature table of ``cfg.feature_set`` with the binary target of ``cfg.windows.label``
    (warm-up rows dropped) and the target's column name. Depends only on the feature set,
    the label and the bars, so a study builds it once for all its trials."""
    spec = parse_label(cfg.windows.label)
    table, _ = build_feature_table(
        bars, cfg.feature_set, [spec], timeframe=cfg.data.tf, drop_warmup=True
    )
    return binary_target(table, spec)


def windows_from_table(
    cfg: SupervisedConfig, table: pl.DataFrame, target: str, device: torch.device
) -> WindowData:
    return build_windows(
        table,
        feature_names=list(get_feature_set(cfg.feature_set).columns),
        label=target,
        lookback=cfg.windows.lookback,
        timeframe=cfg.data.tf,
        fractions=cfg.windows.fractions,
        embargo_bars=cfg.windows.embargo_bars,
        scaler=cfg.windows.scaler,
        device=device,
        split_starts_ms=cfg.windows.split_starts_ms(),
    )


def prepare_windows(cfg: SupervisedConfig, bars: pl.DataFrame, device: torch.device) -> WindowData:
    return windows_from_table(cfg, *feature_table(cfg, bars), device)


AfterFit = Callable[
    [Path, WindowData, pl.DataFrame], tuple[dict[str, Any], dict[str, float], Path] | None
]


def write_bundle(
    path: Path, model: nn.Module, cfg: SupervisedConfig, data: WindowData, result: FitResult
) -> Path:
    """The run's figures (test split) and bundle."""
    figures: dict[str, str] = {}
    if "test" in result.predictions:
        prob, y = result.predictions["test"]
        written = classifier_figures(
            path / "figures", history=result.history, best_epoch=result.best_epoch,
            y=y, prob=prob, threshold=result.threshold,
        )  # fmt: skip
        figures = {k: str(v.relative_to(path)) for k, v in written.items()}
    return save_bundle(
        path, model, cfg=cfg, data=data,
        checkpoints=[(c.epoch, c.value, c.state) for c in result.checkpoints],
        threshold=result.threshold, best_epoch=result.best_epoch,
        metrics={"val": result.val, "test": result.test}, history=result.history,
        figures=figures,
    )  # fmt: skip


def train_supervised(
    cfg: SupervisedConfig,
    tracker: Tracker | None = None,
    bars: pl.DataFrame | None = None,
    *,
    data: WindowData | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    parent_run: str | None = None,
    after_fit: AfterFit | None = None,
    on_run_start: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model``; returns the JSON summary (run id, bundle, best epoch, metrics,
    and the ``after_fit`` section: the workflow's signal backtest).

    Many runs over the same bars (a campaign, a study) pass what they share: ``data``
    (windows built from ``bars`` for this config). ``on_epoch`` sees each epoch's history
    row after it is tracked (a study reports and prunes there); ``parent_run`` nests the
    tracked run under another. ``after_fit(bundle, windows, bars)`` runs inside the tracked
    run once the bundle is written and returns ``(summary section, metrics to log,
    artifact directory)`` or None. ``on_run_start(run_id)`` is called once the tracked run
    is open (a study notes the id on its trial).
    """
    seed_everything(cfg.seed)
    device = default_device()
    if bars is None:
        bars = ParquetStore(cfg.data.store).read_universe(cfg.data.tf, cfg.data.symbols)
    if data is None:
        data = prepare_windows(cfg, bars, device)
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model,
        n_features=len(data.feature_names),
        window=data.lookback,
        n_assets=len(data.symbols),
        overrides=cfg.model_config_,
    )
    name = run_name(cfg.phase, "supervised", cfg.model, cfg.variant)
    tags = {
        "phase": cfg.phase,
        "experiment_type": "supervised",
        "model_type": cfg.model,
        "dataset_version": f"{cfg.feature_set}:{data.report['splits']['train']['start']}..."
        f"{data.report['splits']['test']['end']}",
    }

    def run(run_id: str | None) -> dict[str, Any]:
        if tracker is not None:
            tracker.log_params(cfg.model_dump(mode="json", by_alias=True))
            versions = library_versions(("mlflow-skinny", "rtdl-revisiting-models"))
            tracker.log_params({"env": environment(), "packages": versions})
            tracker.set_tags(
                {"git_commit": str(git_commit()), "cuda": str(torch.cuda.is_available())}
            )
            tracker.log_params(
                {f"data.{s}.{k}": v for s, d in data.report["splits"].items()
                 for k, v in d.items() if k in ("rows", "windows", "positive_rate")}
            )  # fmt: skip

        def step(row: dict[str, float]) -> None:
            if tracker is not None:
                tracker.log_metrics(row, step=int(row["epoch"]))
            if on_epoch is not None:
                on_epoch(row)

        result = fit(model, data, cfg.train, seed=cfg.seed, on_epoch=step)
        bundle = write_bundle(cfg.output_dir / "bundle", model, cfg, data, result)
        tr = data.splits["train"]
        x, asset, _ = tr.batch(torch.arange(min(2, tr.n_windows), device=tr.x.device))
        summary_txt = write_model_summary(model, [x, asset], cfg.output_dir / "model_summary.txt")
        summary: dict[str, Any] = {
            "run_id": run_id,
            "run_name": name,
            "bundle": str(bundle),
            "model": cfg.model,
            "parameters": count_parameters(model),
            "best_epoch": result.best_epoch,
            "best_metric": {
                "name": cfg.train.early_stopping.metric,
                "value": result.history[result.best_epoch - 1][cfg.train.early_stopping.metric]
                if result.best_epoch
                else None,
            },
            "epochs_run": len(result.history),
            "threshold": result.threshold,
            "val": result.val,
            "test": result.test,
            "positive_rate": {s: d["positive_rate"] for s, d in data.report["splits"].items()},
            "windows": {s: d["windows"] for s, d in data.report["splits"].items()},
            "seconds": round(result.seconds, 2),
        }
        final = {f"final_{s}_{k}": v for s in ("val", "test")
                 for k, v in summary[s].items() if isinstance(v, float)}  # fmt: skip
        extra = after_fit(bundle, data, bars) if after_fit is not None else None
        if extra is not None:
            summary["backtest"], metrics, artifacts = extra
            final |= metrics
        if tracker is not None:
            tracker.log_metrics(final, step=len(result.history))
            tracker.log_artifact(bundle, "bundle")
            tracker.log_artifact(summary_txt, "model")
            if extra is not None:
                tracker.log_artifact(artifacts, "backtest")
        return summary

    if tracker is None:
        return run(None)
    with tracker.start_run(name, tags, parent=parent_run) as run_id:
        if on_run_start is not None:
            on_run_start(run_id)
        return run(run_id)
