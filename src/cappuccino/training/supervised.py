"""The supervised trainer: one loop for every window classifier.

Per epoch: shuffled training windows (a seeded generator; splits stay chronological),
gradient clipping, the scheduler step, then metrics on train and val (loss, accuracy,
precision, recall, F1, F1 of the positive class, ROC-AUC, PR-AUC at threshold 0.5).
Early stopping watches any history metric and restores the best epoch's weights, which
are what is kept: nothing is retrained. The decision threshold is chosen on val, and
the test split is scored once, at the end, with the best weights and that threshold.
Deterministic for a seed on CPU.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cappuccino.config.supervised import TrainSettings
from cappuccino.datasets.windows import WindowData, WindowSplit
from cappuccino.metrics.classification import summary, threshold_for
from cappuccino.reporting.metrics import view
from cappuccino.training.losses import LossFn, bce, class_weights, focal, weighted_bce
from cappuccino.utils.progress import steps

log = logging.getLogger(__name__)
# per epoch, for train and val (threshold 0.5 for the decision metrics)
HISTORY_METRICS = view("history")


@dataclass(frozen=True)
class Checkpoint:
    """One epoch's weights (on the CPU) and its value of the early-stopping metric."""

    epoch: int
    value: float
    state: dict[str, torch.Tensor]


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    threshold: float = 0.5
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: bool = False
    checkpoints: list[Checkpoint] = field(default_factory=list)  # the top k, best first
    # split -> (probabilities, labels) of the kept model, in window order
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def make_loss(settings: TrainSettings, train: WindowSplit) -> LossFn:
    if settings.loss == "bce":
        return bce
    if settings.loss == "focal":
        return focal(settings.focal_alpha, settings.focal_gamma)
    y = train.y[train.ends]
    n_pos = int(y.sum())
    return weighted_bce(*class_weights(n_pos, int(y.numel()) - n_pos))


@torch.no_grad()
def predict_split(
    model: nn.Module, split: WindowSplit, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, labels)`` for every window of ``split``, in window order."""
    model.eval()
    logits, labels = [], []
    for start in range(0, split.n_windows, batch_size):
        idx = torch.arange(start, min(start + batch_size, split.n_windows), device=split.x.device)
        x, asset, y = split.batch(idx)
        logits.append(model(x, asset).float())
        labels.append(y)
    if not logits:
        return np.zeros(0), np.zeros(0)
    return torch.cat(logits).cpu().numpy(), torch.cat(labels).cpu().numpy()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def _scores(z: np.ndarray, y: np.ndarray, loss_fn: LossFn, threshold: float) -> dict[str, Any]:
    loss = float(loss_fn(torch.as_tensor(z), torch.as_tensor(y)))
    return {"loss": loss, **summary(y.astype(np.int64), _sigmoid(z), threshold)}


def evaluate_split(
    model: nn.Module, split: WindowSplit, loss_fn: LossFn, batch_size: int, threshold: float = 0.5
) -> dict[str, Any]:
    return _scores(*predict_split(model, split, batch_size), loss_fn, threshold)


def _keep_top(
    top: list[Checkpoint], k: int, epoch: int, value: float, model: nn.Module, mode: str
) -> None:
    """Insert this epoch into ``top`` (best first, earlier epoch first on ties) if it is
    among the ``k`` best by ``value``."""
    if math.isnan(value):
        return
    if len(top) >= k and (value >= top[-1].value if mode == "min" else value <= top[-1].value):
        return
    state = {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()}
    top.append(Checkpoint(epoch, value, state))
    top.sort(key=lambda c: c.value, reverse=mode == "max")
    del top[k:]


def _improved(value: float, best: float, mode: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


def fit(
    model: nn.Module,
    data: WindowData,
    settings: TrainSettings,
    *,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data.splits['train']``, select on ``val``, score ``test``."""
    t0 = time.perf_counter()
    train, val = data.splits["train"], data.splits["val"]
    if train.n_windows == 0 or val.n_windows == 0:
        raise ValueError(
            f"no windows to train on: train {train.n_windows}, val {val.n_windows} "
            f"(lookback {data.lookback})"
        )
    dev = train.x.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    model.to(dev)
    loss_fn = make_loss(settings, train)
    opt_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched: Any = None
    if settings.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5, min_lr=1e-6)
    elif settings.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs)
    use_amp = settings.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    es = settings.early_stopping
    best = math.inf if es.mode == "min" else -math.inf
    best_state = copy.deepcopy(model.state_dict())
    result = FitResult(model=model)
    bad_epochs = 0
    with steps(f"{type(model).__name__} epochs", settings.epochs) as bar:
        for epoch in range(1, settings.epochs + 1):
            model.train()
            perm = torch.randperm(train.n_windows, generator=gen, device=dev)
            for start in range(0, train.n_windows, settings.batch_size):
                idx = perm[start : start + settings.batch_size]
                if idx.numel() < 2 and start > 0:
                    continue  # a lone last window would break batch norm; it is seen next epoch
                x, asset, y = train.batch(idx)
                with torch.autocast(device_type=dev.type, enabled=use_amp):
                    loss = loss_fn(model(x, asset).float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                if settings.grad_clip is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                scaler.step(opt)
                scaler.update()
            tr = evaluate_split(model, train, loss_fn, settings.eval_batch_size)
            va = evaluate_split(model, val, loss_fn, settings.eval_batch_size)
            row: dict[str, float] = {"epoch": float(epoch), "lr": float(opt.param_groups[0]["lr"])}
            for prefix, m in (("train", tr), ("val", va)):
                for k in HISTORY_METRICS:
                    row[f"{prefix}_{k}"] = float(m[k])
            row["seconds"] = time.perf_counter() - t0
            if es.metric not in row:
                raise ValueError(
                    f"early_stopping.metric: got {es.metric!r}, expected one of "
                    f"{sorted(k for k in row if k.startswith(('train_', 'val_')))}"
                )
            result.history.append(row)
            _keep_top(
                result.checkpoints, settings.keep_top_k, epoch, row[es.metric], model, es.mode
            )
            bar.advance(note=f"{es.metric} {row[es.metric]:.4g}")
            if on_epoch is not None:
                on_epoch(row)
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(va["loss"])
            elif sched is not None:
                sched.step()
            if _improved(row[es.metric], best, es.mode, es.min_delta):
                best, bad_epochs = row[es.metric], 0
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch = epoch
            else:
                bad_epochs += 1
                if bad_epochs >= es.patience:
                    result.stopped_early = True
                    break
    model.load_state_dict(best_state)
    scored = {
        name: predict_split(model, split, settings.eval_batch_size)
        for name, split in data.splits.items()
        if name in ("val", "test") and split.n_windows
    }
    z_val, y_val = scored["val"]
    if settings.threshold == "fixed":
        thr = 0.5
    else:
        thr = threshold_for(
            y_val.astype(np.int64), _sigmoid(z_val), objective=settings.threshold,
            precision_target=settings.precision_target,
        )  # fmt: skip
    result.threshold = thr
    result.val = _scores(z_val, y_val, loss_fn, thr)
    if "test" in scored:
        result.test = _scores(*scored["test"], loss_fn, thr)
    result.predictions = {name: (_sigmoid(z), y) for name, (z, y) in scored.items()}
    result.seconds = time.perf_counter() - t0
    return result


__all__ = [
    "HISTORY_METRICS",
    "Checkpoint",
    "FitResult",
    "evaluate_split",
    "fit",
    "make_loss",
    "predict_split",
]
