"""PNG figures of a classifier run: training curves, confusion matrix, ROC and PR curves.

matplotlib (Agg, no display) draws them; each ``*_figure`` function returns the figure so
its plotted data can be checked, and :func:`save_png` writes it atomically. Curves come
from :mod:`cappuccino.metrics.classification`, the same code that computes the metrics.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cappuccino.metrics.classification import (
    classification_metrics,
    confusion,
    pr_auc,
    pr_curve,
    roc_auc,
    roc_curve,
)
from cappuccino.utils.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
_DPI = 100


def _figure(ncols: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    fig = Figure(figsize=(width * ncols, height), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def training_curves_figure(
    history: Sequence[Mapping[str, float]], *, best_epoch: int | None = None
) -> Figure:
    """Loss, ranking metrics (ROC-AUC, PR-AUC) and positive-class F1 per epoch, train and val;
    a dashed line marks the kept (best) epoch."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(3, 4.2, 3.4)
    epochs = [int(r["epoch"]) for r in history]
    panels = (
        ("loss", ("loss",)),
        ("ranking (threshold-free)", ("roc_auc", "pr_auc")),
        ("F1 of the positive class at 0.5", ("f1_pos",)),
    )
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            for split, style in (("train", "-"), ("val", "--")):
                col = f"{split}_{key}"
                if history and col in history[0]:
                    ax.plot(epochs, [r[col] for r in history], style, marker=".", label=col)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return fig


def confusion_figure(
    y: npt.ArrayLike, prob: npt.ArrayLike, threshold: float, *, title: str = "test"
) -> Figure:
    """2x2 counts (rows: actual, columns: predicted) at ``threshold``, with row shares."""
    t = np.asarray(y).astype(np.int64)
    pred = (np.asarray(prob, dtype=np.float64) >= threshold).astype(np.int64)
    c = confusion(t, pred)
    m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = _figure(1, 4.4, 4.0)
    ax.imshow(m, cmap="Blues")
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    for i in range(2):
        for j in range(2):
            colour = "white" if m[i, j] > m.max() / 2 else "black"
            ax.text(j, i, f"{m[i, j]:,}\n{share[i, j]:.1%}", ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], ["0 (no buy)", "1 (buy)"])
    ax.set_yticks([0, 1], ["0", "1"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    s = classification_metrics(t, pred)
    ax.set_title(
        f"{title}: threshold {threshold:.3f}\nprecision {s['precision']:.3f}, "
        f"recall {s['recall']:.3f}",
        fontsize="medium",
    )
    return fig


def roc_figure(y: npt.ArrayLike, prob: npt.ArrayLike, *, threshold: float | None = None) -> Figure:
    """ROC curve (line 0), the chance diagonal (line 1) and the operating point at
    ``threshold``."""
    fpr, tpr, thr = roc_curve(y, prob)
    fig, ax = _figure()
    ax.plot(fpr, tpr, label=f"ROC-AUC {roc_auc(y, prob):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance")
    if threshold is not None:
        k = int(np.searchsorted(-thr, -threshold, side="right")) - 1  # last thr >= threshold
        ax.plot(fpr[k], tpr[k], "o", color="black", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (test)")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def pr_figure(y: npt.ArrayLike, prob: npt.ArrayLike, *, threshold: float | None = None) -> Figure:
    """Precision against recall (line 0), the positive rate a random guess reaches (line 1)
    and the operating point at ``threshold``."""
    precision, recall, thr = pr_curve(y, prob)
    base = float(np.mean(np.asarray(y)))
    fig, ax = _figure()
    ax.plot(recall, precision, label=f"average precision {pr_auc(y, prob):.3f}")
    ax.plot([0, 1], [base, base], color="grey", linestyle="--", label=f"positive rate {base:.3f}")
    if threshold is not None and (thr >= threshold).any():
        k = int(np.flatnonzero(thr >= threshold)[-1])
        ax.plot(recall[k], precision[k], "o", color="black", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall (test)")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def classifier_figures(
    out_dir: Path,
    *,
    history: Sequence[Mapping[str, float]],
    best_epoch: int | None,
    y: npt.ArrayLike,
    prob: npt.ArrayLike,
    threshold: float,
) -> dict[str, Path]:
    """Write ``training_curves.png``, ``confusion_test.png``, ``roc_test.png`` and
    ``pr_test.png`` under ``out_dir`` (curves need both classes in ``y``; skipped, and
    left out of the returned map, otherwise)."""
    out_dir = Path(out_dir)
    t = np.asarray(y).astype(np.int64)
    figs: dict[str, Figure] = {
        "training_curves": training_curves_figure(history, best_epoch=best_epoch),
        "confusion_test": confusion_figure(t, prob, threshold),
    }
    if 0 < t.sum() < t.size:
        figs["roc_test"] = roc_figure(t, prob, threshold=threshold)
        figs["pr_test"] = pr_figure(t, prob, threshold=threshold)
    else:
        log.warning(
            "test labels hold one class (%d of %d positive): no ROC/PR figure", t.sum(), t.size
        )
    return {name: save_png(fig, out_dir / f"{name}.png") for name, fig in figs.items()}


def heatmap_figure(
    values: Sequence[Sequence[float]], rows: Sequence[str], columns: Sequence[str], title: str
) -> Figure:
    """A rows x columns heat map with each cell's value written in it (e.g. assets x
    features)."""
    m = np.asarray(values, dtype=np.float64)
    fig, ax = _figure(1, max(4.0, 0.9 * len(columns) + 2.0), max(2.5, 0.45 * len(rows) + 1.5))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), list(columns), rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)), list(rows), fontsize="small")
    top = m.max() if m.size else 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            colour = "black" if m[i, j] > top * 0.6 else "white"
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color=colour,
                    fontsize="x-small")  # fmt: skip
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize="medium")
    return fig
