"""Market arrays from real sample bars: alignment, warm-up, carried values, periods."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.data.validate import fill_gaps
from cappuccino.datasets.market import build_market_arrays
from cappuccino.features.pipeline import compute_features

TF = Timeframe.parse("1h")


def test_arrays_match_the_per_symbol_feature_pipeline() -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(["BTC/USDT", "ETH/USDT"]))
    m = build_market_arrays(bars, "cappuccino14", TF)
    assert m.symbols == ("BTC/USDT", "ETH/USDT") and m.features.shape[1:] == (2, 14)
    assert np.isfinite(m.features).all()
    eth_bars, _ = fill_gaps(bars.filter(pl.col("symbol") == "ETH/USDT"), TF)
    feats, _ = compute_features(eth_bars, "cappuccino14", timeframe=TF)
    eth = feats.drop_nulls()
    ts0 = int(m.timestamps[0])
    row = eth.filter(pl.col("timestamp").dt.epoch("ms") == ts0 + 1000 * 3600 * 100)
    assert np.allclose(m.features[100, 1], row.select(m.feature_names).to_numpy()[0])
    assert np.all(np.diff(m.timestamps) == 3_600_000)


def test_periods_and_carried_values() -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol") == "BTC/USDT")
    i = pl.int_range(pl.len())
    # 30 zero-volume bars, then a breakout: relative volume is undefined on bar 530
    bars = bars.with_columns(
        pl.when((i >= 500) & (i < 530)).then(0.0).otherwise(pl.col("volume")).alias("volume"),
        pl.when(i == 530).then(pl.col("close") * 10).otherwise(pl.col("close")).alias("close"),
        pl.when(i == 530).then(pl.col("high") * 10).otherwise(pl.col("high")).alias("high"),
    )
    m = build_market_arrays(bars, "cappuccino14", TF)
    assert m.features_carried >= 1
    assert m.describe()["features_carried_forward"] == m.features_carried
    k = m.feature_names.index("range_breakout_volume")
    t = 530 - m.warmup_bars_dropped
    assert m.features[t, 0, k] == m.features[t - 1, 0, k]  # carried from the previous bar
    sub = m.between("2021-01-01T00:00:00", "2021-01-31T23:00:00")
    assert sub.n_bars == 31 * 24 and sub.describe()["start"].startswith("2021-01-01T00:00")
    with pytest.raises(ValueError, match="no bars between"):
        m.between("2030-01-01", None)
