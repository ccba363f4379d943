"""Typed settings of the supervised trainer (``cappuccino.training.supervised``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from cappuccino.config.models import DataSettings, FeatureSetName, _Model
from cappuccino.market.rules import MarketRules


class EarlyStopping(_Model):
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs; the
    best epoch's weights are restored (and are what a bundle keeps)."""

    metric: str = Field("val_loss", description="val_<metric> or train_<metric> of the history")
    mode: Literal["min", "max"] = Field("min", description="min for losses, max for scores")
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")


class TrainSettings(_Model):
    """One training loop for every window classifier."""

    epochs: int = Field(30, ge=1, description="maximum epochs")
    batch_size: int = Field(256, ge=1, description="training windows per step")
    eval_batch_size: int = Field(4096, ge=1, description="windows per evaluation step")
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="optimizer")
    learning_rate: float = Field(1e-3, gt=0, description="initial learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="weight decay (decoupled for AdamW)")
    scheduler: Literal["plateau", "cosine", "none"] = Field(
        "plateau", description="plateau: x0.5 after 5 epochs without val-loss gain, floor 1e-6"
    )
    grad_clip: float | None = Field(1.0, gt=0, description="global gradient-norm clip")
    loss: Literal["bce", "weighted_bce", "focal"] = Field("bce", description="loss function")
    focal_alpha: float = Field(0.25, ge=0, le=1, description="focal loss alpha")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss gamma")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    keep_top_k: int = Field(
        3,
        ge=1,
        description="checkpoints kept in the bundle: the k best epochs by early_stopping.metric",
    )
    threshold: Literal["f1_pos", "precision", "fixed"] = Field(
        "f1_pos", description="decision threshold chosen on val (fixed: 0.5)"
    )
    precision_target: float = Field(0.6, gt=0, le=1, description="for threshold=precision")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")


class WindowSettings(_Model):
    """Which label to predict from which windows, and how time is split."""

    label: str = Field(
        "forward:h=24,threshold=0.01,fee=0.001",
        description="label spec (features.labels.parse_label); its 0/1 column is the target",
    )
    lookback: int = Field(16, ge=1, description="bars per window")
    fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train / val / test shares of the bars, in time order"
    )
    embargo_bars: int = Field(24, ge=0, description="bars left out between splits")
    split_starts: tuple[datetime, datetime] | None = Field(
        None, description="first bars of val and test (UTC); when set, fractions are not used"
    )
    scaler: Literal["zscore", "robust", "minmax"] = Field("zscore", description="fit on train")

    @field_validator("split_starts")
    @classmethod
    def _utc(cls, v: tuple[datetime, datetime] | None) -> tuple[datetime, datetime] | None:
        if v is None:
            return None
        out = tuple(d if d.tzinfo else d.replace(tzinfo=UTC) for d in v)
        if out[0] >= out[1]:
            raise ValueError(f"got {[d.isoformat() for d in out]}, expected val start < test start")
        return (out[0], out[1])

    def split_starts_ms(self) -> tuple[int, int] | None:
        if self.split_starts is None:
            return None
        a, b = self.split_starts
        return int(a.timestamp() * 1000), int(b.timestamp() * 1000)


class SignalBacktestSettings(_Model):
    """How a trained classifier's test-period signals are traded through the market core:
    one equal slot per asset, bought when a signal turns it on, held ``hold_bars``."""

    enabled: bool = Field(True, description="backtest the test-period signals after training")
    hold_bars: int | None = Field(
        None, ge=1, description="bars a signal keeps its asset on (None: the label's horizon)"
    )
    market: MarketRules = Field(default_factory=MarketRules)
    benchmarks: list[str] | None = Field(
        None, description="benchmark policies (None: cash, buy_and_hold, equal_weight:24, BTC)"
    )


class SupervisedConfig(_Model):
    """``cappuccino train``: one window classifier on a store's symbols."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    seed: int = Field(0, ge=0, description="the one seed for every random choice in the run")
    output_dir: Path = Field(Path("runs/train"), description="the bundle is written here")
    data: DataSettings = Field(default_factory=DataSettings)
    feature_set: FeatureSetName = Field("nn23", description="registered feature set")
    windows: WindowSettings = Field(default_factory=WindowSettings)
    model: str = Field("mlp", description="registered model name (cappuccino models list)")
    model_config_: dict[str, Any] = Field(
        default_factory=dict, alias="model_params", description="overrides of the model's config"
    )
    train: TrainSettings = Field(default_factory=TrainSettings)
    backtest: SignalBacktestSettings = Field(default_factory=SignalBacktestSettings)
    tracking_uri: str | None = Field(
        "sqlite:///mlflow.db", description="MLflow tracking URI (None: no tracking)"
    )
    experiment: str = Field("cappuccino", description="MLflow experiment name")
    phase: str = Field("baseline", description="run-name/tag: phase")
    variant: str = Field("default", description="run-name/tag: variant")
