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


def test_multi_timeframe_arrays_feed_the_rl_observation() -> None:
    import torch

    from cappuccino.config.rl import EnvSettings
    from cappuccino.features.scaling import Scaler
    from cappuccino.market import MarketRules
    from cappuccino.training.rl.env import BatchedTradingEnv

    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(["BTC/USDT", "ETH/USDT"]))
    m = build_market_arrays(bars, "cappuccino14+4h+1d", TF)
    assert m.features.shape[1:] == (2, 42) and np.isfinite(m.features).all()
    assert m.feature_names[14] == "open@4h" and m.feature_names[28] == "open@1d"
    # every kept bar is warm on the daily columns: ATR(14) vs ATR(50) first has a value on
    # day 64 (index 63); that day closes at 24:00, seen from its 23:00 bar, row 64 * 24 - 1
    assert m.warmup_bars_dropped == 64 * 24 - 1
    # the 1d close seen at a bar is the previous UTC day's close (a day closes at 00:00)
    k = m.feature_names.index("close@1d")
    t = int(np.argmax((m.timestamps // 3_600_000) % 24 == 5))  # a 05:00 bar
    day = m.timestamps[t] // 86_400_000 * 86_400_000
    last_bar_of_yesterday = int(np.flatnonzero(m.timestamps == day - 3_600_000)[0])
    assert m.features[t, 0, k] == m.close[last_bar_of_yesterday, 0]
    env = BatchedTradingEnv(m, settings=EnvSettings(feature_set=m.feature_set, lookback=3),
                            rules=MarketRules(), n_envs=2, seed=0,
                            scaler=Scaler.fit(m.features))  # fmt: skip
    obs = env.reset()
    assert obs.shape[-1] == env.obs_dim and env.n_features == 42
    assert torch.isfinite(torch.as_tensor(obs)).all()
