"""Typed settings of an Optuna study (``cappuccino tune``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from cappuccino.config.models import _Model
from cappuccino.config.rl import ALL_STAGES, RLTrainConfig, StageList
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


class CVSettings(_Model):
    """Combinatorial purged CV of an RL study: ``n_groups`` consecutive groups of bars,
    every choice of ``n_test_groups`` tested once by a policy trained on the rest."""

    n_groups: int = Field(6, ge=3, description="consecutive groups of bars")
    n_test_groups: int = Field(2, ge=1, description="groups tested per fold")
    purge_bars: int = Field(
        24, ge=0, description="bars removed from train on both sides of a test block"
    )
    embargo_bars: int = Field(24, ge=0, description="further bars removed after a test block")
    benchmark: str = Field(
        "equal_weight:24", description="policy whose Sharpe on the same bars is subtracted"
    )
    start: datetime | None = Field(
        None,
        description="first bar of the study's data (None: the store's first); with a "
        "pretrained encoder, a date after the bars it was pretrained on",
    )
    end: datetime | None = Field(None, description="last bar of the study's data (None: last)")
    max_folds: int | None = Field(
        None, ge=1, description="run only the first k folds (a budget; paths need them all)"
    )


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
    kind: Literal["supervised", "rl"] = Field(
        "supervised",
        description="supervised: a window classifier; rl: PPO (or, with rl.mappo, multi-agent "
        "PPO) over CPCV folds",
    )
    supervised: SupervisedConfig = Field(
        default_factory=SupervisedConfig, description="the run every trial starts from"
    )
    rl: RLTrainConfig = Field(
        default_factory=RLTrainConfig,
        description="the PPO run every RL trial starts from (with a mappo section: multi-agent "
        "PPO, tuned over the MAPPO space)",
    )
    mappo_stages: StageList = Field(
        ALL_STAGES,
        description="multi-agent trials: the stages each fold trains in turn (the first: "
        "symbols), sharing rl.ppo.total_timesteps",
    )
    cv: CVSettings = Field(default_factory=CVSettings)
    warm_start: str | None = Field(
        None, description="enqueue the top_k trials of this study (same storage) first, those "
        "that fit this study's space",
    )  # fmt: skip
    narrow_from: str | None = Field(
        None, description="narrow each numeric range to the span of this study's top_k trials "
        "(plus narrow_margin)",
    )  # fmt: skip
    top_k: int = Field(5, ge=1, description="trials read from warm_start / narrow_from")
    narrow_margin: float = Field(
        0.1, ge=0, description="share of the top trials' span added on each side when narrowing"
    )

    @model_validator(mode="after")
    def _rl_maximises(self) -> TuneConfig:
        if self.kind == "rl" and self.direction != "maximize":
            raise ValueError("direction: an RL study maximises its out-of-sample Sharpe excess")
        if self.cv.n_test_groups >= self.cv.n_groups:
            raise ValueError(
                f"cv.n_test_groups: got {self.cv.n_test_groups}, expected < n_groups "
                f"({self.cv.n_groups})"
            )
        return self
