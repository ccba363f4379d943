"""Chronological splits and index-based windows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from cappuccino.data.schema import Timeframe
from cappuccino.datasets.windows import build_windows, chronological_splits

TF = Timeframe.parse("1h")
H = 3_600_000


def _table(bars_by_symbol: dict[str, list[int]], seed: int = 0) -> pl.DataFrame:
    """Rows at the given hour offsets per symbol; features f0, f1; label = parity of hour."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, hours in bars_by_symbol.items():
        for h in hours:
            rows.append((h * H, s, float(rng.normal()), float(h), float(h % 2)))
    return pl.DataFrame(
        rows, schema=["timestamp", "symbol", "f0", "f1", "label"], orient="row"
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))


def test_chronological_splits_by_hand() -> None:
    s = chronological_splits(np.arange(100) * H, fractions=(0.6, 0.2, 0.2), embargo_bars=5)
    # 100 bars - 2 embargoes of 5 = 90 usable: 54, 18, 18
    assert [(x.start_ms // H, x.end_ms // H) for x in s] == [(0, 53), (59, 76), (82, 99)]
    with pytest.raises(ValueError, match="expected sum 1"):
        chronological_splits(np.arange(10), fractions=(0.5, 0.2, 0.2))
    # by dates: val from hour 60, test from the first bar at or after hour 80.5
    d = chronological_splits(
        np.arange(100) * H, embargo_bars=5, starts_ms=(60 * H, 80 * H + H // 2)
    )
    assert [(x.start_ms // H, x.end_ms // H) for x in d] == [(0, 54), (60, 75), (81, 99)]
    with pytest.raises(ValueError, match="split 'val': no bars"):
        chronological_splits(np.arange(100) * H, embargo_bars=5, starts_ms=(60 * H, 63 * H))
    with pytest.raises(ValueError, match="increasing"):
        chronological_splits(np.arange(100) * H, starts_ms=(80 * H, 60 * H))


def test_windows_stay_inside_one_symbol_and_consecutive_bars() -> None:
    # A: hours 0..9 with hour 5 missing; B: hours 0..9. Lookback 3, one split holding all.
    table = _table({"A/USDT": [0, 1, 2, 3, 4, 6, 7, 8, 9], "B/USDT": list(range(10))})
    wd = build_windows(
        table, feature_names=["f0", "f1"], label="label", lookback=3, timeframe=TF,
        fractions=(0.8, 0.1, 0.1),
    )  # fmt: skip
    train = wd.splits["train"]  # hours 0..7 (80 % of 10 bars)
    ends = [(int(train.asset[e]), int(train.time_ms[e]) // H) for e in train.ends.tolist()]
    # A: ends at hours 2, 3, 4 (not 6, 7: they would cross the gap); B: hours 2..7
    assert ends == [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7)]
    x, asset, y = train.batch(torch.tensor([0, 3, 8]))
    assert x.shape == (3, 3, 2) and asset.tolist() == [0, 1, 1]
    # feature f1 is the hour, scaled with the train scaler: undo it to read the hours back
    hours = x[..., 1].double() * wd.scaler.scale[1] + wd.scaler.center[1]
    assert hours.round().tolist() == [[0, 1, 2], [0, 1, 2], [5, 6, 7]]
    assert y.tolist() == [0.0, 0.0, 1.0]  # label at the window's last bar (hour parity)


def test_scaler_sees_train_rows_only_and_rates_are_reported() -> None:
    table = _table({"A/USDT": list(range(100))}, seed=1)
    wd = build_windows(table, feature_names=["f0", "f1"], label="label", lookback=4, timeframe=TF)
    later = table.with_columns(
        pl.when(pl.col("timestamp").dt.epoch("ms") > 70 * H).then(pl.col("f0") * 1e6)
        .otherwise(pl.col("f0")).alias("f0")
    )  # fmt: skip
    wd2 = build_windows(later, feature_names=["f0", "f1"], label="label", lookback=4, timeframe=TF)
    assert np.array_equal(wd.scaler.center, wd2.scaler.center)
    train_f0 = table["f0"].to_numpy()[:70]
    assert wd.scaler.center[0] == pytest.approx(train_f0.mean())
    val = wd.splits["val"]
    assert wd.report["splits"]["val"]["positive_rate"] == pytest.approx(
        float(val.y[val.ends].mean())
    )
    assert wd.report["splits"]["train"]["windows"] == 70 - 3


def test_bad_labels_and_columns_are_clear_errors() -> None:
    table = _table({"A/USDT": list(range(30))}).with_columns(pl.col("label") * 2)
    with pytest.raises(ValueError, match="expected 0/1 values"):
        build_windows(table, feature_names=["f0"], label="label", lookback=2, timeframe=TF)
    with pytest.raises(ValueError, match=r"missing columns \['f9'\]"):
        build_windows(table, feature_names=["f9"], label="label", lookback=2, timeframe=TF)
