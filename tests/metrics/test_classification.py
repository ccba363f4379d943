"""Classification metrics against scikit-learn; losses against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from cappuccino.metrics import classification as cm
from cappuccino.training.losses import bce, class_weights, focal, weighted_bce


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60),
)
def test_decision_metrics_match_sklearn(pairs: list[tuple[int, int]]) -> None:
    y, pred = np.array(pairs).T
    m = cm.classification_metrics(y, pred)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["f1_pos"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", labels=[0, 1], zero_division=0)
    )


# labels with scores on a coarse grid: many ties, the hard case for ranking metrics
_SCORED = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 8).map(lambda k: k / 8)), min_size=2, max_size=80
)


@settings(max_examples=150, deadline=None)
@given(_SCORED)
def test_ranking_metrics_and_curves_match_sklearn_with_ties(pairs: list[tuple[int, float]]) -> None:
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    if 0 < y.sum() < y.size:
        assert cm.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
        fpr, tpr, thr = cm.roc_curve(y, s)
        ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, ref_fpr)
        np.testing.assert_allclose(tpr, ref_tpr)
        np.testing.assert_array_equal(thr[1:], ref_thr[1:])  # sklearn's first is max + 1 or inf
    else:
        assert math.isnan(cm.roc_auc(y, s))
        with pytest.raises(ValueError, match="both classes"):
            cm.roc_curve(y, s)
    if y.sum() > 0:
        assert cm.pr_auc(y, s) == pytest.approx(skm.average_precision_score(y, s))
        prec, rec, thr = cm.pr_curve(y, s)
        ref_p, ref_r, ref_t = skm.precision_recall_curve(y, s)
        # sklearn: increasing thresholds, a final (precision 1, recall 0) point; it may also
        # drop the lowest thresholds once recall has reached 1 (they are repeats of it)
        n = ref_t.size
        np.testing.assert_allclose(prec[:n], ref_p[:-1][::-1])
        np.testing.assert_allclose(rec[:n], ref_r[:-1][::-1])
        np.testing.assert_array_equal(thr[:n], ref_t[::-1])
        assert (rec[n:] == 1.0).all()
    else:
        with pytest.raises(ValueError, match="positive"):
            cm.pr_curve(y, s)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 10).map(lambda k: k / 10)),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.3, 0.5, 0.75, 1.0]),
)
def test_threshold_choice_matches_a_brute_force_search(
    pairs: list[tuple[int, float]], target: float
) -> None:
    y = np.array([p[0] for p in pairs])
    p = np.array([p[1] for p in pairs])
    best_f1, best_f1_thr = -1.0, 1.0
    best_rec, best_prec_thr = -1.0, 1.0
    for thr in sorted(set(p.tolist()), reverse=True):  # every candidate, scored by sklearn
        pred = (p >= thr).astype(int)
        f1 = skm.f1_score(y, pred, zero_division=0)
        if f1 > best_f1:
            best_f1, best_f1_thr = f1, thr
        rec = skm.recall_score(y, pred, zero_division=0)
        if skm.precision_score(y, pred, zero_division=0) >= target and rec >= best_rec:
            best_rec, best_prec_thr = rec, thr
    assert cm.threshold_for(y, p) == best_f1_thr
    assert cm.threshold_for(y, p, objective="precision", precision_target=target) == best_prec_thr


def test_threshold_choice_on_validation() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9])
    # predicting positive from 0.3 up: tp 4, fp 1, fn 0 -> F1 8/9, the best
    assert cm.threshold_for(y, p) == 0.3
    # precision >= 0.75 first holds at 0.6 (3/3) and at 0.3 (4/5 = 0.8): lowest is 0.3
    assert cm.threshold_for(y, p, objective="precision", precision_target=0.75) == 0.3
    assert cm.threshold_for(y, p, objective="precision", precision_target=0.9) == 0.6
    s = cm.summary(y, p, threshold=0.5)
    assert (s["tp"], s["fp"], s["tn"], s["fn"]) == (3, 0, 3, 1)


def test_losses_match_their_formulas() -> None:
    z = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    p = torch.sigmoid(z)
    ref_bce = -(y * p.log() + (1 - y) * (1 - p).log())
    assert bce(z, y).item() == pytest.approx(ref_bce.mean().item())
    w_pos, w_neg = class_weights(3, 2)
    assert (w_pos, w_neg) == (5 / 3, 5 / 2)
    w = torch.where(y == 1, w_pos, w_neg)
    assert weighted_bce(w_pos, w_neg)(z, y).item() == pytest.approx((w * ref_bce).mean().item())
    a, g = 0.25, 2.0
    ref_focal = -a * (1 - p) ** g * y * p.log() - (1 - a) * p**g * (1 - y) * (1 - p).log()
    assert focal(a, g)(z, y).item() == pytest.approx(ref_focal.mean().item())
    assert focal(0.5, 0.0)(z, y).item() == pytest.approx(0.5 * ref_bce.mean().item())
    # stable for extreme logits where sigmoid saturates
    big = torch.tensor([80.0, -80.0], dtype=torch.float64)
    assert torch.isfinite(focal()(big, torch.tensor([0.0, 1.0], dtype=torch.float64)))
    with pytest.raises(ValueError, match="both classes"):
        class_weights(0, 5)
