"""Cross-validation schemes: CPCV against skfolio's CombinatorialPurgedCV, the rest by hand
and by properties (no train bar within purge/embargo of a test bar)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from skfolio.model_selection import CombinatorialPurgedCV

from cappuccino.datasets import splits as sp


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(30, 400),
    n_groups=st.integers(3, 8),
    k=st.integers(2, 6),
    purge=st.integers(0, 5),
    embargo=st.integers(0, 5),
)
def test_cpcv_matches_skfolio(n: int, n_groups: int, k: int, purge: int, embargo: int) -> None:
    k = min(k, n_groups - 1)
    assume(2 * purge + embargo < n // n_groups - 1)  # skfolio needs a strict margin
    ref = CombinatorialPurgedCV(
        n_folds=n_groups, n_test_folds=k, purged_size=purge, embargo_size=embargo
    )
    ours = sp.combinatorial_purged(n, n_groups, k, purge=purge, embargo=embargo)
    theirs = list(ref.split(np.zeros((n, 1))))
    assert len(ours) == len(theirs) == math.comb(n_groups, k)
    for fold, (train, tests) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(fold.train_index(), train)
        np.testing.assert_array_equal(fold.test_index(), np.concatenate(tests))
    paths = sp.cpcv_paths(n_groups, k)
    assert paths.shape == (ref.n_test_paths, n_groups) == (sp.n_cpcv_paths(n_groups, k), n_groups)
    np.testing.assert_array_equal(paths, ref.recombined_paths.T)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(40, 300),
    n_groups=st.integers(2, 7),
    k=st.integers(1, 5),
    purge=st.integers(0, 6),
    embargo=st.integers(0, 6),
)
def test_no_train_bar_near_a_test_bar_and_segments_are_contiguous(
    n: int, n_groups: int, k: int, purge: int, embargo: int
) -> None:
    k = min(k, n_groups - 1)
    assume(2 * purge + embargo < n // n_groups)  # else a middle group's train can be empty
    folds = [
        *sp.combinatorial_purged(n, n_groups, k, purge=purge, embargo=embargo),
        *sp.purged_kfold(n, n_groups, purge=purge, embargo=embargo),
    ]
    for f in folds:
        train, test = f.train_index(), f.test_index()
        assert not np.intersect1d(train, test).size
        for a, b in f.test:  # nothing within purge before or purge + embargo after
            near = (train >= a - purge) & (train < b + purge + embargo)
            assert not near.any()
        # segments: sorted, non-empty, non-touching (maximal), inside [0, n)
        for segs in (f.train, f.test):
            assert all(0 <= a < b <= n for a, b in segs)
            assert all(s[1] < t[0] for s, t in itertools.pairwise(segs))
        # everything not blocked is trained on: purging removes no more than it must
        blocked = np.zeros(n, dtype=bool)
        for a, b in f.test:
            blocked[max(0, a - purge) : b + purge + embargo] = True
        np.testing.assert_array_equal(np.sort(train), np.flatnonzero(~blocked))


def test_kfold_walk_forward_and_holdout_by_hand() -> None:
    # 20 bars, 4 groups of 5; purge 1, embargo 2
    kf = sp.purged_kfold(20, 4, purge=1, embargo=2)
    assert [f.test for f in kf] == [((0, 5),), ((5, 10),), ((10, 15),), ((15, 20),)]
    assert kf[0].train == ((8, 20),)
    assert kf[1].train == ((0, 4), (13, 20))
    assert kf[3].train == ((0, 14),)
    wf = sp.walk_forward(20, 3, test_size=4, purge=2)
    assert [(f.train, f.test) for f in wf] == [
        (((0, 6),), ((8, 12),)),
        (((0, 10),), ((12, 16),)),
        (((0, 14),), ((16, 20),)),
    ]
    rolling = sp.walk_forward(20, 3, test_size=4, train_size=5, purge=2)
    assert [f.train for f in rolling] == [((1, 6),), ((5, 10),), ((9, 14),)]
    (h,) = sp.holdout(20, 0.25, purge=3)
    assert (h.train, h.test) == (((0, 12),), ((15, 20),))
    with pytest.raises(ValueError, match="no training bars"):
        sp.walk_forward(10, 3, test_size=3, purge=1)
    with pytest.raises(ValueError, match="n_test_groups"):
        sp.combinatorial_purged(20, 4, 4)


def test_cpcv_paths_cover_every_group_once_from_models_that_never_saw_it() -> None:
    folds = sp.combinatorial_purged(60, 6, 2, purge=1)
    paths = sp.cpcv_paths(6, 2)
    assert paths.shape == (5, 6)  # C(6, 2) * 2 / 6 = 5
    used = {}
    for path in paths:
        for g, fold_id in enumerate(path):
            assert g in folds[fold_id].test_groups
            used[(int(fold_id), g)] = used.get((int(fold_id), g), 0) + 1
    # every (fold, tested group) pair lands in exactly one path
    assert sorted(used) == sorted((i, g) for i, f in enumerate(folds) for g in f.test_groups)
    assert set(used.values()) == {1}
