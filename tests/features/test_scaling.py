"""Scalers: statistics per trailing column, JSON round trip, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cappuccino.features.scaling import Scaler


def test_zscore_robust_minmax_by_hand() -> None:
    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [10.0, 10.0]])
    z = Scaler.fit(x, "zscore")
    assert z.center.tolist() == [4.0, 10.0]
    assert z.scale.tolist() == pytest.approx([np.sqrt((9 + 4 + 1 + 36) / 4), 1.0])  # constant -> 1
    r = Scaler.fit(x, "robust")
    assert r.center.tolist() == [2.5, 10.0]
    assert r.scale.tolist() == pytest.approx([4.75 - 1.75, 1.0])
    m = Scaler.fit(x, "minmax")
    assert m.transform(x)[:, 0].tolist() == pytest.approx([0.0, 1 / 9, 2 / 9, 1.0])
    assert m.transform(x)[:, 1].tolist() == [0.0] * 4


def test_statistics_are_per_asset_and_feature_and_json_round_trips() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3, 2)) * np.array([1.0, 10.0]) + np.arange(3)[:, None]
    s = Scaler.fit(x)
    assert s.center.shape == (3, 2)
    assert np.allclose(s.center, x.mean(axis=0)) and np.allclose(s.scale, x.std(axis=0))
    back = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    assert np.array_equal(back.transform(x), s.transform(x))


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="kind: got 'l2'"):
        Scaler.fit(np.zeros((3, 1)), "l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trailing shape"):
        Scaler.fit(np.zeros((3, 2))).transform(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="infinite"):
        Scaler.fit(np.array([[1.0], [np.inf]]))
