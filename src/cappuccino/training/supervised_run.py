"""``cappuccino train``: store -> features + label -> windows -> model -> fit -> bundle, tracked.

Bundle layout (a directory; weights are a state dict loaded with ``weights_only=True``,
everything else JSON)::

    model.pt       state dict of the best epoch
    bundle.json    format, model name + resolved config, feature set + names, label,
                   lookback, symbols, scaler, threshold, val/test metrics, resolved run
                   config, library versions, git commit
    history.json   one row per epoch
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from cappuccino.config.supervised import SupervisedConfig
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.windows import WindowData, build_windows
from cappuccino.features.labels import ForwardReturnLabel, LabelSpec, parse_label
from cappuccino.features.scaling import Scaler
from cappuccino.features.sets import get_feature_set
from cappuccino.features.table import build_feature_table
from cappuccino.models import count_parameters
from cappuccino.models.registry import build_model, model_config
from cappuccino.tracking import Tracker, run_name
from cappuccino.training.bundle_io import (
    read_meta,
    write_history,
    write_state_dict,
)
from cappuccino.training.supervised import FitResult, fit
from cappuccino.utils.devices import default_device
from cappuccino.utils.io import atomic_write_json
from cappuccino.utils.provenance import git_commit, library_versions
from cappuccino.utils.seeding import seed_everything

log = logging.getLogger(__name__)
FORMAT = "cappuccino.supervised-bundle/1"


def binary_target(table: pl.DataFrame, spec: LabelSpec) -> tuple[pl.DataFrame, str]:
    """The 0/1 target of a label spec: ``label_buy_<h>`` for a forward-return label; for a
    triple-barrier label, 1 when the take-profit barrier is hit first (``label_tb_hit_<h>``)."""
    if isinstance(spec, ForwardReturnLabel):
        return table, spec.columns[1]
    src = spec.columns[0]
    name = src.replace("label_tb_", "label_tb_hit_")
    return table.with_columns((pl.col(src) == 1).cast(pl.Float64).alias(name)), name


def prepare_windows(cfg: SupervisedConfig, bars: pl.DataFrame, device: torch.device) -> WindowData:
    spec = parse_label(cfg.windows.label)
    table, _ = build_feature_table(
        bars, cfg.feature_set, [spec], timeframe=cfg.data.tf, drop_warmup=True
    )
    table, target = binary_target(table, spec)
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
    )


@dataclass(frozen=True)
class SupervisedBundle:
    path: Path
    model: nn.Module
    scaler: Scaler
    meta: dict[str, Any]

    def check(self, *, feature_names: list[str], lookback: int) -> None:
        """Raise ``ValueError`` naming the mismatch with data to be scored."""
        if list(self.meta["feature_names"]) != list(feature_names):
            raise ValueError(
                f"bundle {self.path}: features {self.meta['feature_names']} in the bundle, "
                f"{feature_names} in the data"
            )
        if int(self.meta["lookback"]) != lookback:
            raise ValueError(
                f"bundle {self.path}: lookback {self.meta['lookback']} in the bundle, {lookback} asked"
            )


def save_bundle(
    path: Path, model: nn.Module, *, cfg: SupervisedConfig, data: WindowData, result: FitResult
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_state_dict(path / "model.pt", model)
    meta = {
        "format": FORMAT,
        "model": cfg.model,
        "model_params": model_config(cfg.model, cfg.model_config_).model_dump(),
        "parameters": count_parameters(model),
        "feature_set": cfg.feature_set,
        "feature_names": list(data.feature_names),
        "label": {"spec": cfg.windows.label, "column": data.label},
        "lookback": data.lookback,
        "symbols": list(data.symbols),
        "timeframe": cfg.data.tf.label,
        "scaler": data.scaler.to_dict(),
        "threshold": result.threshold,
        "best_epoch": result.best_epoch,
        "metrics": {"val": result.val, "test": result.test},
        "data": data.report,
        "config": cfg.model_dump(mode="json", by_alias=True),
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    atomic_write_json(path / "bundle.json", meta)
    write_history(path / "history.json", result.history)
    return path


def load_bundle(path: Path) -> SupervisedBundle:
    meta = read_meta(path, FORMAT, "model")
    model = build_model(
        meta["model"],
        n_features=len(meta["feature_names"]),
        window=int(meta["lookback"]),
        n_assets=len(meta["symbols"]),
        overrides=meta["model_params"],
    )
    model.load_state_dict(
        torch.load(Path(path) / "model.pt", map_location="cpu", weights_only=True)
    )
    model.eval()
    return SupervisedBundle(Path(path), model, Scaler.from_dict(meta["scaler"]), meta)


def train_supervised(
    cfg: SupervisedConfig, tracker: Tracker | None = None, bars: pl.DataFrame | None = None
) -> dict[str, Any]:
    """Train ``cfg.model``; returns the JSON summary (run id, bundle, best epoch, metrics)."""
    seed_everything(cfg.seed)
    device = default_device()
    if bars is None:
        bars = ParquetStore(cfg.data.store).read_universe(cfg.data.tf, cfg.data.symbols)
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
            tracker.set_tags(
                {f"version.{k}": str(v) for k, v in versions.items()}
                | {"git_commit": str(git_commit()), "cuda": str(torch.cuda.is_available())}
            )
            tracker.log_params(
                {f"data.{s}.{k}": v for s, d in data.report["splits"].items()
                 for k, v in d.items() if k in ("rows", "windows", "positive_rate")}
            )  # fmt: skip
        step = (
            (lambda row: tracker.log_metrics(row, step=int(row["epoch"])))
            if tracker is not None
            else None
        )
        result = fit(model, data, cfg.train, seed=cfg.seed, on_epoch=step)
        bundle = save_bundle(cfg.output_dir / "bundle", model, cfg=cfg, data=data, result=result)
        summary: dict[str, Any] = {
            "run_id": run_id,
            "run_name": name,
            "bundle": str(bundle),
            "model": cfg.model,
            "parameters": count_parameters(model),
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "threshold": result.threshold,
            "val": result.val,
            "test": result.test,
            "positive_rate": {s: d["positive_rate"] for s, d in data.report["splits"].items()},
            "seconds": round(result.seconds, 2),
        }
        if tracker is not None:
            tracker.log_metrics(
                {f"final_{s}_{k}": v for s in ("val", "test")
                 for k, v in summary[s].items() if isinstance(v, float)},
                step=len(result.history),
            )  # fmt: skip
            tracker.log_artifact(bundle, "bundle")
        return summary

    if tracker is None:
        return run(None)
    with tracker.start_run(name, tags) as run_id:
        return run(run_id)


def predict(
    bundle: SupervisedBundle, bars: pl.DataFrame, *, timeframe: str | None = None
) -> pl.DataFrame:
    """Score every valid window of ``bars`` with ``bundle``: one row per window end with
    ``timestamp`` (the window's last bar), ``symbol``, ``prob`` (sigmoid of the logit) and
    ``signal`` (``prob >= threshold`` chosen on validation)."""
    from cappuccino.data.schema import Timeframe
    from cappuccino.datasets.windows import inference_windows
    from cappuccino.training.supervised import predict_split

    meta = bundle.meta
    tf = Timeframe.parse(timeframe or meta["timeframe"])
    if tf.label != meta["timeframe"]:
        raise ValueError(
            f"timeframe {tf.label} asked, the bundle was trained on {meta['timeframe']}"
        )
    table, _ = build_feature_table(bars, meta["feature_set"], [], timeframe=tf, drop_warmup=True)
    features = list(get_feature_set(meta["feature_set"]).columns)
    bundle.check(feature_names=features, lookback=int(meta["lookback"]))
    split = inference_windows(
        table,
        feature_names=features,
        lookback=int(meta["lookback"]),
        timeframe=tf,
        scaler=bundle.scaler,
        symbols=tuple(meta["symbols"]),
    )
    logits, _ = predict_split(bundle.model, split, 4096)
    ends = split.ends.numpy()
    prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return pl.DataFrame(
        {
            "timestamp": split.time_ms.numpy()[ends],
            "symbol": np.asarray(meta["symbols"], dtype=object)[split.asset.numpy()[ends]].astype(
                str
            ),
            "prob": prob,
            "signal": prob >= float(meta["threshold"]),
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
