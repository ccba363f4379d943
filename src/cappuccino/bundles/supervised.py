"""Supervised model bundles: a directory that scores bars without the training run.

Layout (weights are state dicts loaded with ``weights_only=True``, everything else JSON)::

    model.pt       state dict of the kept (best) epoch
    checkpoints/   epoch_NNN.pt: the top-k epochs by the early-stopping metric
    figures/       training_curves.png, confusion_test.png, roc_test.png, pr_test.png
    bundle.json    format, model name + resolved config, feature set + names, label,
                   lookback, symbols, scaler, threshold, val/test metrics, checkpoints,
                   resolved run config, environment, library versions, git commit
    history.json   one row per epoch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from cappuccino.bundles.io import read_meta, read_state_dict, write_history, write_state_dict
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.datasets.windows import WindowData
from cappuccino.features.scaling import Scaler
from cappuccino.models import count_parameters
from cappuccino.models.registry import build_model, model_config
from cappuccino.utils.io import atomic_write_json
from cappuccino.utils.provenance import environment, git_commit, library_versions

FORMAT = "cappuccino.supervised-bundle/1"


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
    path: Path,
    model: nn.Module,
    *,
    cfg: SupervisedConfig,
    data: WindowData,
    checkpoints: Sequence[tuple[int, float, Mapping[str, Tensor]]],
    threshold: float,
    best_epoch: int,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    figures: dict[str, str],
) -> Path:
    """Write the bundle; ``checkpoints`` are ``(epoch, value, state dict)`` of the top-k
    epochs, best first; ``figures`` the files already written under ``path`` (relative)."""
    path.mkdir(parents=True, exist_ok=True)
    write_state_dict(path / "model.pt", model)
    ckpt_dir = path / "checkpoints"
    kept: list[dict[str, Any]] = []
    for epoch, value, state in checkpoints:
        name = f"epoch_{epoch:03d}.pt"
        write_state_dict(ckpt_dir / name, state)
        kept.append({"epoch": epoch, "value": value, "file": f"checkpoints/{name}"})
    names = {f"epoch_{epoch:03d}.pt" for epoch, _, _ in checkpoints}
    for old in ckpt_dir.glob("epoch_*.pt"):  # a previous run's in the same directory
        if old.name not in names:
            old.unlink()
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
        "threshold": threshold,
        "best_epoch": best_epoch,
        "checkpoint_metric": cfg.train.early_stopping.metric,
        "checkpoints": kept,
        "figures": figures,
        "metrics": metrics,
        "data": data.report,
        "config": cfg.model_dump(mode="json", by_alias=True),
        "environment": environment(),
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    atomic_write_json(path / "bundle.json", meta)
    write_history(path / "history.json", history)
    return path


def load_bundle(path: Path, epoch: int | None = None) -> SupervisedBundle:
    """The bundle's kept model, or with ``epoch`` one of its top-k checkpoints."""
    meta = read_meta(path, FORMAT, "model bundle")
    weights = Path(path) / "model.pt"
    if epoch is not None:
        files = {int(c["epoch"]): c["file"] for c in meta.get("checkpoints", [])}
        if epoch not in files:
            raise ValueError(
                f"bundle {path}: no checkpoint of epoch {epoch}; kept: {sorted(files)}"
            )
        weights = Path(path) / files[epoch]
    model = build_model(
        meta["model"],
        n_features=len(meta["feature_names"]),
        window=int(meta["lookback"]),
        n_assets=len(meta["symbols"]),
        overrides=meta["model_params"],
    )
    model.load_state_dict(read_state_dict(weights))
    model.eval()
    return SupervisedBundle(Path(path), model, Scaler.from_dict(meta["scaler"]), meta)
