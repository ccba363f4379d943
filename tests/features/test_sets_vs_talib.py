"""Every shipped column against TA-Lib (and pandas for the derived ones) on the real 7-pair sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
import talib

from cappuccino.data.importing import import_files
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.data.validate import fill_gaps
from cappuccino.features import FEATURE_SETS, compute_features

H1 = Timeframe.parse("1h")


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    store = ParquetStore(tmp_path_factory.mktemp("store"))
    import_files([sample_path()], store)
    out, _ = fill_gaps(store.read(H1), H1)
    return out


def reference(sym: pl.DataFrame) -> dict[str, np.ndarray]:
    """Independent per-symbol computation: TA-Lib kernels + pandas rolling for the derived columns."""
    o, h, lo, c, v = (sym[x].to_numpy() for x in ("open", "high", "low", "close", "volume"))
    ph, pl_, pc, pv = pd.Series(h), pd.Series(lo), pd.Series(c), pd.Series(v)
    macd, sig, hist = talib.MACD(c, 12, 26, 9)
    atr = talib.ATR(h, lo, c, 14)
    atr_mean = pd.Series(atr).rolling(50).mean().to_numpy()
    prev_hi = ph.rolling(20).max().shift(1)
    prev_lo = pl_.rolling(20).min().shift(1)
    prev_vol = pv.rolling(20).mean().shift(1)
    sign = np.where(pc > prev_hi, 1.0, np.where(pc < prev_lo, -1.0, 0.0))
    breakout = np.where(sign == 0, 0.0, sign * v / prev_vol.to_numpy())
    breakout[prev_hi.isna().to_numpy()] = np.nan
    adx = talib.ADX(h, lo, c, 14)
    up, mid, low_band = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    r1 = np.log(pc / pc.shift(1))
    t = sym["timestamp"]
    hours, dow = t.dt.hour().to_numpy(), t.dt.weekday().to_numpy() - 1
    logv = pd.Series(np.log1p(v))
    return {
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "macd": macd,
        "macd_signal": sig,
        "macd_hist": hist,
        "rsi_14": talib.RSI(c, 14),
        "cci_14": talib.CCI(h, lo, c, 14),
        "dx_14": talib.DX(h, lo, c, 14),
        "atr_regime_shift": (atr - atr_mean) / atr_mean,
        "range_breakout_volume": breakout,
        "adx_reacceleration": np.concatenate([[np.nan, np.nan], np.diff(adx, 2)]),
        "atr_14": atr,
        "ema_50": talib.EMA(c, 50),
        "ema_200": talib.EMA(c, 200),
        "bb_middle": mid,
        "bb_upper": up,
        "bb_lower": low_band,
        "bb_width": (up - low_band) / mid,
        "bb_percent": (c - low_band) / (up - low_band),
        "logret_1": r1.to_numpy(),
        "logret_4": np.log(pc / pc.shift(4)).to_numpy(),
        "logret_24": np.log(pc / pc.shift(24)).to_numpy(),
        "logret_168": np.log(pc / pc.shift(168)).to_numpy(),
        "vol_24": r1.rolling(24).std(ddof=0).to_numpy(),
        "vol_168": r1.rolling(168).std(ddof=0).to_numpy(),
        "hl_range": np.log(h / lo),
        "oc_body": np.log(c / o),
        "rsi_14_c": talib.RSI(c, 14) / 100 - 0.5,
        "cci_14_s": talib.CCI(h, lo, c, 14) / 100,
        "macd_hist_n": hist / c,
        "atr_14_n": atr / c,
        "adx_14_c": adx / 100,
        "dist_ema_50": np.log(c / talib.EMA(c, 50)),
        "dist_ema_200": np.log(c / talib.EMA(c, 200)),
        "volume_z_24": ((logv - logv.rolling(24).mean()) / logv.rolling(24).std(ddof=0)).to_numpy(),
        "volume_z_168": (
            (logv - logv.rolling(168).mean()) / logv.rolling(168).std(ddof=0)
        ).to_numpy(),
        "hour_sin": np.sin(2 * np.pi * hours / 24),
        "hour_cos": np.cos(2 * np.pi * hours / 24),
        "dow_sin": np.sin(2 * np.pi * dow / 7),
        "dow_cos": np.cos(2 * np.pi * dow / 7),
    }


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_feature_set_matches_reference(bars: pl.DataFrame, name: str) -> None:
    fs = FEATURE_SETS[name]
    got, report = compute_features(bars, fs)
    assert got.columns == ["timestamp", "symbol", *fs.columns]
    assert report.symbols == 7
    for sym in got["symbol"].unique():
        mine = got.filter(pl.col("symbol") == sym)
        ref = reference(bars.filter(pl.col("symbol") == sym))
        for col in fs.columns:
            a = mine[col].to_numpy()  # nulls -> nan
            b = ref[col]
            ok = np.isfinite(b)
            warm = int(np.argmax(ok))
            # after the reference's warm-up, ours is defined exactly where the reference is
            np.testing.assert_array_equal(
                np.isfinite(a[warm:]), ok[warm:], err_msg=f"{sym} {col} nulls"
            )
            # 1e-9 relative; absolute floor 1e-9 x the column's typical magnitude for values crossing 0
            scale = float(np.median(np.abs(b[ok]))) or 1.0
            np.testing.assert_allclose(
                a[ok], b[ok], rtol=1e-9, atol=1e-9 * scale, err_msg=f"{sym} {col}"
            )
            assert mine[col].null_count() == int((~np.isfinite(a)).sum())  # NaN never leaks out


def test_no_bleed_between_symbols(bars: pl.DataFrame) -> None:
    together, _ = compute_features(bars, "cappuccino14")
    for sym in ("ADA/USDT", "XRP/USDT"):
        alone, _ = compute_features(bars.filter(pl.col("symbol") == sym), "cappuccino14")
        assert together.filter(pl.col("symbol") == sym).equals(alone)


def test_warmup_is_null_not_zero(bars: pl.DataFrame) -> None:
    got, report = compute_features(bars, "cappuccino14")
    first = got.filter(pl.col("symbol") == "BTC/USDT").head(63)
    assert first["atr_regime_shift"].null_count() == 63
    assert first["macd"].null_count() == 33 and first["rsi_14"].null_count() == 14
    assert report.warmup_bars["atr_regime_shift"] == 63
    assert report.warmup_bars["adx_reacceleration"] == 29


def test_range_breakout_is_not_identically_zero(bars: pl.DataFrame) -> None:
    got, _ = compute_features(bars, "cappuccino14")
    rbv = got["range_breakout_volume"].drop_nulls()
    assert (rbv > 0).sum() > 100 and (rbv < 0).sum() > 100


def test_gappy_input_is_rejected(bars: pl.DataFrame) -> None:
    holed = bars.filter(pl.int_range(pl.len()) != 500)
    with pytest.raises(ValueError, match="gap of 1 bars"):
        compute_features(holed, "nn23")


def test_configs_accept_exactly_the_registered_feature_sets() -> None:
    import pydantic

    from cappuccino.config.models import FEATURE_SET_NAMES, FeatureSettings
    from cappuccino.features.sets import FEATURE_SETS, FeatureSet, register

    assert sorted(FEATURE_SET_NAMES) == sorted(FEATURE_SETS)
    for name in FEATURE_SETS:
        assert FeatureSettings(feature_set=name).feature_set == name
    with pytest.raises(pydantic.ValidationError, match="expected one of"):
        FeatureSettings(feature_set="nn24")
    with pytest.raises(ValueError, match="add it to cappuccino.config.models.FEATURE_SET_NAMES"):
        register(FeatureSet("unlisted", ("x",), lambda b: {}, "not in the config list"))
