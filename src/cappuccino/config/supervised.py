"""Typed settings of the supervised trainer (``cappuccino.training.supervised``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cappuccino.config.models import _Model


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
    threshold: Literal["f1_pos", "precision", "fixed"] = Field(
        "f1_pos", description="decision threshold chosen on val (fixed: 0.5)"
    )
    precision_target: float = Field(0.6, gt=0, le=1, description="for threshold=precision")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
