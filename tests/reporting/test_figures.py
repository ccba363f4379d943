"""The PNG figures plot what the metrics compute (checked against scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from cappuccino.reporting import figures


def _scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    prob = 1 / (1 + np.exp(-(1.5 * y + rng.normal(size=n))))
    return y, np.round(prob, 2)  # rounded: ties, as real probabilities have


def test_roc_and_pr_figures_plot_the_reference_curves() -> None:
    y, p = _scores()
    roc = figures.roc_figure(y, p, threshold=0.5)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(roc.axes[0].lines[0].get_xydata(), np.c_[fpr, tpr])
    point = roc.axes[0].lines[2].get_xydata()[0]
    pred = p >= 0.5
    expected = (pred[y == 0].mean(), pred[y == 1].mean())  # (fpr, tpr) at the threshold
    assert tuple(point) == pytest.approx(expected)
    assert f"{skm.roc_auc_score(y, p):.3f}" in roc.axes[0].lines[0].get_label()

    pr = figures.pr_figure(y, p, threshold=0.5)
    prec, rec, _ = skm.precision_recall_curve(y, p)
    got = pr.axes[0].lines[0].get_xydata()
    n = prec.size - 1  # sklearn's final (recall 0, precision 1) point is not a threshold
    np.testing.assert_allclose(got[:n], np.c_[rec[:-1], prec[:-1]][::-1])
    base = pr.axes[0].lines[1].get_xydata()
    assert base[0, 1] == pytest.approx(y.mean())
    point = pr.axes[0].lines[2].get_xydata()[0]
    assert tuple(point) == pytest.approx((skm.recall_score(y, pred), skm.precision_score(y, pred)))


def test_confusion_and_curves_figures(tmp_path: Path) -> None:
    y, p = _scores()
    fig = figures.confusion_figure(y, p, 0.5)
    cells = sorted(t.get_text().split("\n")[0] for t in fig.axes[0].texts)
    tn, fp, fn, tp = skm.confusion_matrix(y, p >= 0.5).ravel()
    assert cells == sorted(f"{v:,}" for v in (tn, fp, fn, tp))
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.1, "train_roc_auc": 0.6,
         "val_roc_auc": 0.55, "train_pr_auc": 0.4, "val_pr_auc": 0.35, "train_f1_pos": 0.5,
         "val_f1_pos": 0.45}
        for e in (1, 2, 3)
    ]  # fmt: skip
    curves = figures.training_curves_figure(history, best_epoch=2)
    loss_lines = curves.axes[0].lines
    np.testing.assert_allclose(loss_lines[1].get_xydata()[:, 1], [1.1, 0.6, 1 / 3 + 0.1])
    assert loss_lines[2].get_xydata()[0, 0] == 2  # the kept epoch's marker
    paths = figures.classifier_figures(
        tmp_path, history=history, best_epoch=2, y=y, prob=p, threshold=0.5
    )
    assert sorted(paths) == ["confusion_test", "pr_test", "roc_test", "training_curves"]
    for path in paths.values():
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert len(np.unique(np.asarray(im.convert("L")))) > 10  # drawn, not blank
    # one class only: the curves are undefined and left out, the rest is written
    one = figures.classifier_figures(
        tmp_path / "one", history=history, best_epoch=2, y=np.zeros(5, int), prob=p[:5],
        threshold=0.5,
    )  # fmt: skip
    assert sorted(one) == ["confusion_test", "training_curves"]
