"""Cross-validation over time: holdout, walk-forward, purged k-fold and combinatorial purged CV.

Every scheme works on ``n`` bars indexed ``0 .. n-1`` in time order and returns
:class:`Fold` objects whose train and test parts are lists of **contiguous segments**
``(start, stop)`` (half-open). A consumer never stitches non-contiguous bars into one
series: an env runs its episodes inside one segment, a window dataset keeps windows inside one.

Leakage control (López de Prado, *Advances in Financial Machine Learning*, ch. 7):

- ``purge``: the label horizon in bars. A training bar whose label window overlaps a
  test bar's is removed: the ``purge`` bars before each test segment and the ``purge``
  bars after it.
- ``embargo``: a further ``embargo`` bars removed after each test segment (serial
  correlation of features), so a train segment after a test one starts
  ``purge + embargo`` bars after it ends.

Groups for k-fold and CPCV follow scikit-learn / skfolio: ``n_groups`` consecutive groups,
the first ``n_groups - 1`` with ``n // n_groups`` bars and the last with the rest.
Combinatorial purged CV tests every choice of ``n_test_groups`` groups
(``C(N, k)`` folds); its test groups recombine into ``C(N, k) * k / N`` backtest paths
(:func:`cpcv_paths`), each covering every group exactly once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Segment = tuple[int, int]


@dataclass(frozen=True)
class Fold:
    """One train/test split. ``test_groups`` names the CPCV / k-fold groups tested."""

    train: tuple[Segment, ...]
    test: tuple[Segment, ...]
    test_groups: tuple[int, ...] = ()

    @property
    def n_train(self) -> int:
        return sum(b - a for a, b in self.train)

    @property
    def n_test(self) -> int:
        return sum(b - a for a, b in self.test)

    def train_index(self) -> npt.NDArray[np.int64]:
        return segments_index(self.train)

    def test_index(self) -> npt.NDArray[np.int64]:
        return segments_index(self.test)


def segments_index(segments: tuple[Segment, ...] | list[Segment]) -> npt.NDArray[np.int64]:
    """The bar indices covered by ``segments``, in order."""
    if not segments:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in segments])


def _check(n: int, purge: int, embargo: int) -> None:
    if n < 2:
        raise ValueError(f"n: got {n} bars, expected at least 2")
    if purge < 0 or embargo < 0:
        raise ValueError(f"purge and embargo: got {purge} and {embargo}, expected >= 0")


def _merge(segments: list[Segment]) -> list[Segment]:
    """Sort and join touching or overlapping segments; drop empty ones."""
    out: list[Segment] = []
    for a, b in sorted(s for s in segments if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def train_around(n: int, test: list[Segment], purge: int, embargo: int) -> tuple[Segment, ...]:
    """Every bar of ``0 .. n-1`` not in ``test`` and not within ``purge`` bars before or
    ``purge + embargo`` bars after a test segment, as contiguous segments."""
    blocked = _merge([(max(0, a - purge), min(n, b + purge + embargo)) for a, b in _merge(test)])
    out, cursor = [], 0
    for a, b in blocked:
        if a > cursor:
            out.append((cursor, a))
        cursor = b
    if cursor < n:
        out.append((cursor, n))
    return tuple(out)


def group_bounds(n: int, n_groups: int) -> list[Segment]:
    """``n_groups`` consecutive groups: ``n // n_groups`` bars each, the last takes the rest."""
    if n_groups < 2 or n // n_groups < 1:
        raise ValueError(f"n_groups: got {n_groups} for {n} bars, expected 2 <= n_groups <= n")
    size = n // n_groups
    return [(g * size, (g + 1) * size if g < n_groups - 1 else n) for g in range(n_groups)]


def holdout(n: int, test_fraction: float = 0.2, *, purge: int = 0, embargo: int = 0) -> list[Fold]:
    """One fold: the last ``test_fraction`` of the bars tested, the bars before it (less
    the purge) trained."""
    _check(n, purge, embargo)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: got {test_fraction}, expected 0 < f < 1")
    start = n - max(1, round(n * test_fraction))
    test = [(start, n)]
    fold = Fold(train_around(n, test, purge, embargo), tuple(test))
    if fold.n_train == 0:
        raise ValueError(f"holdout: no training bars left ({n} bars, purge {purge})")
    return [fold]


def walk_forward(
    n: int,
    n_folds: int,
    *,
    test_size: int | None = None,
    train_size: int | None = None,
    purge: int = 0,
    embargo: int = 0,
) -> list[Fold]:
    """``n_folds`` consecutive test blocks at the end of the data, each trained only on the
    past: every bar before it (expanding, ``train_size=None``) or the last ``train_size``
    (rolling), less the purge. ``test_size`` defaults to ``n // (n_folds + 1)``. The
    embargo does not apply: no training bar follows a test bar."""
    _check(n, purge, embargo)
    size = test_size if test_size is not None else n // (n_folds + 1)
    if n_folds < 1 or size < 1:
        raise ValueError(f"walk_forward: got n_folds={n_folds}, test_size={size}")
    first = n - n_folds * size
    if first - purge < 1:
        raise ValueError(
            f"walk_forward: {n} bars hold no training bars before {n_folds} x {size} test bars "
            f"with a purge of {purge}"
        )
    folds = []
    for f in range(n_folds):
        a, b = first + f * size, first + (f + 1) * size
        stop = a - purge
        start = 0 if train_size is None else max(0, stop - train_size)
        folds.append(Fold(((start, stop),), ((a, b),), (f,)))
    return folds


def purged_kfold(n: int, n_groups: int, *, purge: int = 0, embargo: int = 0) -> list[Fold]:
    """k-fold over consecutive groups: each group tested once, trained on the others (past
    and future) less the purge and embargo around it."""
    _check(n, purge, embargo)
    out = []
    for g, seg in enumerate(group_bounds(n, n_groups)):
        out.append(Fold(train_around(n, [seg], purge, embargo), (seg,), (g,)))
    return _nonempty(out, purge, embargo)


def combinatorial_purged(
    n: int, n_groups: int, n_test_groups: int, *, purge: int = 0, embargo: int = 0
) -> list[Fold]:
    """Combinatorial purged CV: one fold per choice of ``n_test_groups`` of the
    ``n_groups`` groups (in ``itertools.combinations`` order). Test segments are the
    chosen groups (adjacent ones joined); train is the rest less purge and embargo."""
    _check(n, purge, embargo)
    if not 1 <= n_test_groups < n_groups:
        raise ValueError(
            f"n_test_groups: got {n_test_groups}, expected 1 <= n_test_groups < n_groups ({n_groups})"
        )
    bounds = group_bounds(n, n_groups)
    out = []
    for combo in itertools.combinations(range(n_groups), n_test_groups):
        test = _merge([bounds[g] for g in combo])
        out.append(Fold(train_around(n, test, purge, embargo), tuple(test), combo))
    return _nonempty(out, purge, embargo)


def _nonempty(folds: list[Fold], purge: int, embargo: int) -> list[Fold]:
    for f in folds:
        if f.n_train == 0:
            raise ValueError(
                f"fold testing groups {list(f.test_groups)}: no training bars left after a "
                f"purge of {purge} and an embargo of {embargo}"
            )
    return folds


def n_cpcv_paths(n_groups: int, n_test_groups: int) -> int:
    """``C(N, k) * k / N`` = ``C(N - 1, k - 1)``."""
    return math.comb(n_groups - 1, n_test_groups - 1)


def cpcv_paths(n_groups: int, n_test_groups: int) -> npt.NDArray[np.int64]:
    """``(n_paths, n_groups)``: for each backtest path, the fold whose test part supplies each
    group. The ``j``-th path takes, for every group, the ``j``-th fold (in fold order)
    that tests it; so every fold's test groups land in ``k`` different paths and every
    path covers all groups once, each predicted by a model that never trained on it."""
    folds = list(itertools.combinations(range(n_groups), n_test_groups))
    per_group = [[i for i, c in enumerate(folds) if g in c] for g in range(n_groups)]
    return np.array(per_group, dtype=np.int64).T
