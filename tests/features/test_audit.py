"""Lookahead audit: every shipped set passes; deliberately leaky features are caught."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.data.validate import fill_gaps
from cappuccino.features import indicators as ind
from cappuccino.features.audit import audit_lookahead
from cappuccino.features.sets import FEATURE_SETS, FeatureSet, SeriesBars


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    f = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(["BTC/USDT", "ADA/USDT"]))
    return fill_gaps(f.filter(pl.col("timestamp").dt.month().is_in([1, 2])), Timeframe.parse("1h"))[
        0
    ]


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_shipped_sets_pass(bars: pl.DataFrame, name: str) -> None:
    report = audit_lookahead(bars, name, n_cuts=6)
    assert report.passed, report.violations


def _leaky(b: SeriesBars) -> dict[str, np.ndarray]:
    centred = np.convolve(b.close, np.ones(5) / 5, mode="same")  # uses 2 future bars
    full_mean = np.full_like(b.close, b.close.mean())  # uses the whole series
    return {
        "rsi_14": ind.rsi(b.close, 14),
        "centred_sma": centred,
        "zscore_full": b.close - full_mean,
        "next_close": np.concatenate([b.close[1:], [np.nan]]),
    }


def test_leaky_features_are_caught_and_named(bars: pl.DataFrame) -> None:
    leaky = FeatureSet(
        name="leaky",
        columns=("rsi_14", "centred_sma", "zscore_full", "next_close"),
        compute=_leaky,
        description="deliberately leaky",
    )
    report = audit_lookahead(bars, leaky, n_cuts=4)
    assert not report.passed
    assert set(report.violations) == {"centred_sma", "zscore_full", "next_close"}
    assert "@" in report.first_violation["next_close"]


def test_seed_breakout_including_current_bar_is_identically_zero(bars: pl.DataFrame) -> None:
    # the replaced system compared close[t] with the max high of a window that included bar t
    for sym in ("BTC/USDT", "ADA/USDT"):
        f = bars.filter(pl.col("symbol") == sym)
        h, lo, c = (f[x].to_numpy() for x in ("high", "low", "close"))
        seed_sign = np.where(
            c > ind.rolling_max(h, 20), 1, np.where(c < ind.rolling_min(lo, 20), -1, 0)
        )
        assert (seed_sign == 0).all()
        ours = ind.range_breakout_volume(h, lo, c, f["volume"].to_numpy(), 20)
        assert np.count_nonzero(np.nan_to_num(ours)) > 20
