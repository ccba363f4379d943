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


def pr_auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k``; NaN without positives."""
    t = _binary(y, "y")
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    # thresholds at each distinct score: last index of every run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tp = np.cumsum(t_sorted)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_for(
    y: npt.ArrayLike,
    prob: npt.ArrayLike,
    *,
    objective: str = "f1_pos",
    precision_target: float = 0.6,
) -> float:
    """Decision threshold chosen on validation data.

    ``objective='f1_pos'``: the threshold maximising F1 of the positive class.
    ``objective='precision'``: the lowest threshold whose precision reaches
    ``precision_target`` (most recall at that precision); 1.0 when none does.
    Candidates are the distinct predicted probabilities (predict positive when ``>=``).
    """
    t = _binary(y, "y")
    p = np.asarray(prob, dtype=np.float64)
    cands = np.unique(p)[::-1]
    best_thr, best = 1.0, -1.0
    for thr in cands:
        m = classification_metrics(t, (p >= thr).astype(np.int64))
        if objective == "f1_pos":
            if m["f1_pos"] > best:
                best_thr, best = float(thr), m["f1_pos"]
        elif objective == "precision":
            if m["precision"] >= precision_target and m["recall"] >= best:
                best_thr, best = float(thr), m["recall"]
        else:
            raise ValueError(f"objective: got {objective!r}, expected 'f1_pos' or 'precision'")
    return best_thr


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
