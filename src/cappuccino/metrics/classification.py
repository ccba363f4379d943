"""Binary classification metrics (leaf, numpy): pure functions of labels and scores.

``y`` holds 0/1 labels; ``score`` any real score where larger means more likely positive
(probabilities or logits: the ranking metrics do not care); ``pred`` 0/1 decisions.

- precision, recall, ``f1_pos``: of the positive class (0 when undefined: no predicted or
  no actual positives), as scikit-learn with ``zero_division=0``;
- ``f1``: macro F1, the mean of both classes' F1;
- ``roc_auc``: probability that a random positive scores above a random negative, ties
  counting one half (Mann-Whitney);
- ``pr_auc``: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over score thresholds
  (scikit-learn's definition, no interpolation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _binary(y: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    a = np.asarray(y)
    if a.ndim != 1 or not np.isin(a, [0, 1]).all():
        raise ValueError(f"{name}: expected a 1-d array of 0/1 values")
    return a.astype(np.int64)


def confusion(y: npt.ArrayLike, pred: npt.ArrayLike) -> dict[str, int]:
    """``tp``, ``fp``, ``tn``, ``fn`` counts."""
    t, p = _binary(y, "y"), _binary(pred, "pred")
    return {
        "tp": int(((t == 1) & (p == 1)).sum()),
        "fp": int(((t == 0) & (p == 1)).sum()),
        "tn": int(((t == 0) & (p == 0)).sum()),
        "fn": int(((t == 1) & (p == 0)).sum()),
    }


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return _div(2 * tp, 2 * tp + fp + fn)


def classification_metrics(y: npt.ArrayLike, pred: npt.ArrayLike) -> dict[str, float]:
    """accuracy, precision, recall, f1 (macro), f1_pos from decisions."""
    c = confusion(y, pred)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    n = tp + fp + tn + fn
    f1_pos, f1_neg = _f1(tp, fp, fn), _f1(tn, fn, fp)
    return {
        "accuracy": _div(tp + tn, n),
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": (f1_pos + f1_neg) / 2,
        "f1_pos": f1_pos,
    }


def roc_auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney with average ranks for ties); NaN if one class."""
    t = _binary(y, "y")
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(t.sum()), int(t.size - t.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _sweep(
    t: npt.NDArray[np.int64], s: Array
) -> tuple[Array, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(thresholds, tp, fp)`` for predicting positive at ``score >= thr``, one entry per
    distinct score, thresholds descending. One sort, O(n log n)."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # last index of each tie run
    tp = np.cumsum(t_sorted)[last]
    return s_sorted[last], tp, (last + 1) - tp


def pr_auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k``; NaN without positives."""
    t = _binary(y, "y")
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    _, tp, fp = _sweep(t, np.asarray(score, dtype=np.float64))
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y: npt.ArrayLike, score: npt.ArrayLike) -> tuple[Array, Array, Array]:
    """``(fpr, tpr, thresholds)`` at every distinct score, thresholds descending, starting at
    ``(0, 0)`` with threshold ``+inf`` (scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False``). Needs both classes."""
    t = _binary(y, "y")
    n_pos, n_neg = int(t.sum()), int(t.size - t.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_curve: needs both classes, got {n_pos} positives, {n_neg} negatives")
    thr, tp, fp = _sweep(t, np.asarray(score, dtype=np.float64))
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thr]


def pr_curve(y: npt.ArrayLike, score: npt.ArrayLike) -> tuple[Array, Array, Array]:
    """``(precision, recall, thresholds)`` at every distinct score, thresholds descending
    (scikit-learn's ``precision_recall_curve`` in reverse, without its final ``(1, 0)``
    point). Needs a positive."""
    t = _binary(y, "y")
    n_pos = int(t.sum())
    if n_pos == 0:
        raise ValueError("pr_curve: needs at least one positive")
    thr, tp, fp = _sweep(t, np.asarray(score, dtype=np.float64))
    return tp / (tp + fp), tp / n_pos, thr


def threshold_for(
    y: npt.ArrayLike,
    prob: npt.ArrayLike,
    *,
    objective: str = "f1_pos",
    precision_target: float = 0.6,
) -> float:
    """Decision threshold chosen on validation data.

    ``objective='f1_pos'``: the threshold maximising F1 of the positive class (the highest
    such threshold on ties).
    ``objective='precision'``: the lowest threshold whose precision reaches
    ``precision_target`` (most recall at that precision); 1.0 when none does.
    Candidates are the distinct predicted probabilities (predict positive when ``>=``).
    """
    if objective not in ("f1_pos", "precision"):
        raise ValueError(f"objective: got {objective!r}, expected 'f1_pos' or 'precision'")
    t = _binary(y, "y")
    p = np.asarray(prob, dtype=np.float64)
    if p.size == 0:
        return 1.0
    thr, tp, fp = _sweep(t, p)
    if objective == "f1_pos":
        fn = int(t.sum()) - tp
        f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        return float(thr[int(np.argmax(f1))])
    ok = np.flatnonzero(tp / (tp + fp) >= precision_target)
    return float(thr[ok[-1]]) if ok.size else 1.0


def summary(y: npt.ArrayLike, prob: npt.ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric at ``threshold`` plus the ranking metrics and the confusion counts."""
    t = _binary(y, "y")
    p = np.asarray(prob, dtype=np.float64)
    pred = (p >= threshold).astype(np.int64)
    return {
        **classification_metrics(t, pred),
        "roc_auc": roc_auc(t, p),
        "pr_auc": pr_auc(t, p),
        "threshold": threshold,
        "positive_rate": float(t.mean()) if t.size else float("nan"),
        **confusion(t, pred),
    }
