"""The supervised trainer on small synthetic windows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from cappuccino.config.supervised import EarlyStopping, TrainSettings
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.windows import WindowData, build_windows
from cappuccino.models.registry import build_model
from cappuccino.training.supervised import evaluate_split, fit, make_loss

H = 3_600_000


def _data(n: int = 600, seed: int = 0, noise: float = 0.0) -> WindowData:
    """Two symbols; label = 1 when the sum of f0 over the last 3 bars is positive."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in ("A/USDT", "B/USDT"):
        f0 = rng.normal(size=n)
        f1 = rng.normal(size=n)
        roll = np.convolve(f0, np.ones(3), mode="full")[:n]
        label = ((roll + noise * rng.normal(size=n)) > 0).astype(float)
        rows += [(i * H, s, f0[i], f1[i], label[i]) for i in range(n)]
    table = pl.DataFrame(rows, schema=["timestamp", "symbol", "f0", "f1", "y"], orient="row")
    table = table.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
    return build_windows(
        table, feature_names=["f0", "f1"], label="y", lookback=4, timeframe=Timeframe.parse("1h")
    )


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", n_features=2, window=4, n_assets=2, overrides={"hidden": [32, 16]})


FAST = {"epochs": 12, "batch_size": 64, "learning_rate": 3e-3}


def test_learns_a_learnable_rule_and_scores_test_once() -> None:
    data = _data()
    res = fit(_model(), data, TrainSettings(**FAST), seed=0)
    assert res.test["accuracy"] > 0.9 and res.test["roc_auc"] > 0.97
    assert len(res.history) <= 12 and 1 <= res.best_epoch <= len(res.history)
    assert 0.0 < res.threshold < 1.0


def test_same_seed_same_history_and_weights() -> None:
    data = _data()
    a = fit(_model(), data, TrainSettings(**{**FAST, "epochs": 3}), seed=3)
    b = fit(_model(), data, TrainSettings(**{**FAST, "epochs": 3}), seed=3)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b.history]
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_early_stopping_keeps_the_best_epoch_weights() -> None:
    data = _data(noise=3.0)  # mostly noise: val loss soon rises
    settings = TrainSettings(
        epochs=40, batch_size=32, learning_rate=1e-2,
        early_stopping=EarlyStopping(metric="val_loss", mode="min", patience=3),
    )  # fmt: skip
    res = fit(_model(), data, settings, seed=0)
    assert res.stopped_early and len(res.history) == res.best_epoch + 3
    best = min(r["val_loss"] for r in res.history)
    assert res.history[res.best_epoch - 1]["val_loss"] == best
    again = evaluate_split(
        res.model, data.splits["val"], make_loss(settings, data.splits["train"]), 4096
    )
    assert again["loss"] == pytest.approx(best, rel=1e-5)  # the restored weights are the best


def test_losses_are_chosen_by_name_and_bad_metric_is_clear() -> None:
    data = _data(n=200)
    train = data.splits["train"]
    y = train.y[train.ends]
    z = torch.zeros_like(y)
    n_pos = int(y.sum())
    w_pos, w_neg = len(y) / n_pos, len(y) / (len(y) - n_pos)
    expected = float(np.log(2) * (w_pos * n_pos + w_neg * (len(y) - n_pos)) / len(y))
    got = make_loss(TrainSettings(loss="weighted_bce"), train)(z, y).item()
    assert got == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="early_stopping.metric: got 'val_sharpe'"):
        fit(
            _model(),
            data,
            TrainSettings(epochs=1, early_stopping=EarlyStopping(metric="val_sharpe")),
            seed=0,
        )


def test_top_k_checkpoints_are_the_k_best_epochs_and_hold_their_weights() -> None:
    data = _data(noise=1.0)
    settings = TrainSettings(
        epochs=8, batch_size=32, learning_rate=1e-2, keep_top_k=3,
        early_stopping=EarlyStopping(metric="val_roc_auc", mode="max", patience=100),
    )  # fmt: skip
    res = fit(_model(), data, settings, seed=0)
    by_value = sorted(res.history, key=lambda r: -r["val_roc_auc"])[:3]
    assert [c.epoch for c in res.checkpoints] == [int(r["epoch"]) for r in by_value]
    assert res.checkpoints[0].epoch == res.best_epoch
    loss_fn = make_loss(settings, data.splits["train"])
    for ckpt in res.checkpoints:  # each file's weights reproduce that epoch's val score
        model = _model(seed=9)
        model.load_state_dict(ckpt.state)
        got = evaluate_split(model, data.splits["val"], loss_fn, 4096)
        assert got["roc_auc"] == pytest.approx(ckpt.value, abs=1e-9)
        assert got["loss"] == pytest.approx(res.history[ckpt.epoch - 1]["val_loss"], rel=1e-5)
    # the kept predictions are the restored model's
    prob, y = res.predictions["test"]
    assert prob.shape == y.shape == (data.splits["test"].n_windows,)
    assert res.test["tp"] == int(((prob >= res.threshold) & (y == 1)).sum())
