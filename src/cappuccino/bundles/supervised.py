"""Supervised model bundles: a directory that scores bars without the training run.

Layout (weights are state dicts loaded with ``weights_only=True``, everything else JSON)::

    model.pt       state dict of the kept (best) epoch
    checkpoints/   epoch_NNN.pt: the top-k epochs by the early-stopping metric
    figures/       training_curves.png, confusion_test.png, roc_test.png, pr_test.png
    bundle.json    the typed manifest (:class:`SupervisedManifest`): model name + resolved
                   config, feature set + names + code hash, label, lookback, symbols,
                   scaler, threshold, val/test metrics, checkpoints, resolved run config,
                   environment, library versions, git commit, the SHA-256 of every
                   weights file and the manifest's own checksum
    history.json   one row per epoch

Loading verifies all of it (:mod:`cappuccino.bundles.manifest`) before any weights are
read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from torch import Tensor, nn

from cappuccino.bundles.io import write_history, write_state_dict
from cappuccino.bundles.manifest import FittedManifest, load_weights, read_manifest, write_manifest
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.datasets.windows import WindowData
from cappuccino.features.scaling import Scaler
from cappuccino.features.sets import feature_set_hash
from cappuccino.models import count_parameters
from cappuccino.models.registry import build_model, model_config
from cappuccino.utils.provenance import environment, git_commit

FORMAT: Final = "cappuccino.supervised-bundle/2"
WEIGHTS = "model.pt"


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    epoch: int
    value: float
    file: str


class SupervisedManifest(FittedManifest):
    """``bundle.json`` of a supervised model bundle."""

    format: Literal["cappuccino.supervised-bundle/2"] = FORMAT
    model: str
    model_params: dict[str, Any]
    parameters: int
    label: dict[str, Any]
    lookback: int
    threshold: float
    best_epoch: int
    checkpoint_metric: str
    checkpoints: list[Checkpoint]
    figures: dict[str, str]
    metrics: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> SupervisedManifest:
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols: got {self.symbols}, expected distinct symbols")
        if self.lookback < 1:
            raise ValueError(f"lookback: got {self.lookback}, expected >= 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold: got {self.threshold}, expected a probability")
        unhashed = [
            f for f in (WEIGHTS, *(c.file for c in self.checkpoints)) if f not in self.files
        ]
        if unhashed:
            raise ValueError(f"files: no hash for {unhashed[0]}")
        return self


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
        "feature_code": feature_set_hash(cfg.feature_set),
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
        "git_commit": git_commit(),
    }
    write_history(path / "history.json", history)
    write_manifest(path / "bundle.json", meta, [WEIGHTS, *(k["file"] for k in kept)])
    return path


def load_bundle(
    path: Path, epoch: int | None = None, *, allow_version_mismatch: bool = False
) -> SupervisedBundle:
    """The bundle's kept model, or with ``epoch`` one of its top-k checkpoints, after every
    check of :func:`~cappuccino.bundles.manifest.read_manifest`."""
    path = Path(path)
    where = path / "bundle.json"
    m, meta = read_manifest(where, SupervisedManifest,
                            allow_version_mismatch=allow_version_mismatch)  # fmt: skip
    weights = path / WEIGHTS
    if epoch is not None:
        files = {c.epoch: c.file for c in m.checkpoints}
        if epoch not in files:
            raise ValueError(
                f"bundle {path}: no checkpoint of epoch {epoch}; kept: {sorted(files)}"
            )
        weights = path / files[epoch]
    try:
        scaler = Scaler.from_dict(m.scaler)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if scaler.center.shape[-1:] != (len(m.feature_names),):
        raise ValueError(
            f"{where}: scaler.shape: got {list(scaler.center.shape)}, expected one centre per "
            f"feature ({len(m.feature_names)})"
        )
    try:
        model = build_model(
            m.model, n_features=len(m.feature_names), window=m.lookback,
            n_assets=len(m.symbols), overrides=m.model_params,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: model: {exc}") from exc
    load_weights(model, weights)
    model.eval()
    return SupervisedBundle(path, model, scaler, meta)
