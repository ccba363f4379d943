"""Typed settings of an Optuna study (``cappuccino tune``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cappuccino.config.models import _Model
from cappuccino.config.supervised import SupervisedConfig


class PrunerSettings(_Model):
    """Which pruner stops unpromising trials, from the values reported per epoch / fold."""

    kind: Literal["median", "percentile", "hyperband", "none"] = Field(
        "median", description="median: MedianPruner; percentile: PercentilePruner; none"
    )
    n_startup_trials: int = Field(10, ge=0, description="trials run in full before pruning")
    n_warmup_steps: int = Field(5, ge=0, description="steps (epochs / folds) before pruning")
    percentile: float = Field(25.0, gt=0, lt=100, description="for kind=percentile")


class StorageSettings(_Model):
    """Where the study lives. SQLite for one machine; PostgreSQL (``postgresql+psycopg://``)
    for workers on several. A worker that stops sending heartbeats for ``grace_period``
    seconds has its trial marked FAIL and re-queued (up to ``max_retry`` times)."""

    url: str = Field("sqlite:///runs/tune/optuna.db", description="any SQLAlchemy URL")
    heartbeat_interval: int = Field(30, ge=1, description="seconds between heartbeats")
    grace_period: int = Field(120, ge=2, description="seconds of silence before FAIL + retry")
    max_retry: int = Field(2, ge=0, description="re-runs of a trial whose worker died")


class TuneConfig(_Model):
    """``cappuccino tune``: a study over one model family's search space."""

    seed: int = Field(0, ge=0, description="sampler seed; every trial trains with the run seed")
    study_name: str = Field("cappuccino", description="study name in the storage")
    output_dir: Path = Field(Path("runs/tune"), description="trial bundles and reports")
    storage: StorageSettings = Field(default_factory=StorageSettings)
    n_trials: int = Field(20, ge=1, description="finished trials (complete or pruned) wanted")
    timeout_s: float | None = Field(None, gt=0, description="stop starting trials after this")
    metric: str = Field("val_f1_pos", description="history metric optimised (val_<metric>)")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="of the metric")
    pruner: PrunerSettings = Field(default_factory=PrunerSettings)
    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="range overrides: {dimension: {low, high, log, choices}}"
    )
    supervised: SupervisedConfig = Field(
        default_factory=SupervisedConfig, description="the run every trial starts from"
    )
