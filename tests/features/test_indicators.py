"""Indicator kernels against hand-computed values and an independent pure-Python Wilder reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cappuccino.data.sample import sample_path
from cappuccino.features import indicators as ind

nan = np.nan


def test_rsi_hand_computed() -> None:
    # diffs +1, -0.5, +1, +0.5, -1; Wilder n=3: avg gain/loss seeded with the mean of 3 diffs
    close = np.array([10, 11, 10.5, 11.5, 12, 11.0])
    out = ind.rsi(close, 3)
    np.testing.assert_allclose(out[3:], [80.0, 100 * 11 / 13, 50.0], rtol=1e-12)
    assert np.isnan(out[:3]).all()


def test_atr_hand_computed() -> None:
    high = np.array([10, 11, 12, 11.5, 14.0])
    low = np.array([8, 9, 9.5, 10.5, 12.0])
    close = np.array([9, 10, 11, 11, 13.0])
    # true ranges from bar 1: 2, 2.5, 1, 3 -> ATR3[3] = 5.5/3, ATR3[4] = (2 * 5.5/3 + 3) / 3
    out = ind.atr(high, low, close, 3)
    np.testing.assert_allclose(out[3:], [5.5 / 3, (2 * 5.5 / 3 + 3) / 3], rtol=1e-12)
    assert np.isnan(out[:3]).all()


def test_cci_hand_computed() -> None:
    x = np.array([1, 5, 6.0])  # typical price = x; mean 4, mean abs dev 2 -> (6-4)/(0.015*2)
    np.testing.assert_allclose(ind.cci(x, x, x, 3)[2], 2 / 0.03, rtol=1e-12)


def test_range_breakout_volume_uses_previous_bars_only() -> None:
    high = np.array([10, 11, 12, 11, 13.0])
    low = np.array([9, 9, 10, 10, 11.0])
    close = np.array([9.5, 10.5, 11.5, 10.5, 12.5])
    volume = np.array([1, 2, 3, 4, 10.0])
    out = ind.range_breakout_volume(high, low, close, volume, 3)
    # bar 3: inside the range of bars 0-2 -> 0; bar 4: 12.5 > max high of bars 1-3 (12) -> +10/mean(2,3,4)
    np.testing.assert_allclose(out, [nan, nan, nan, 0.0, 10 / 3], rtol=1e-12)
    down = ind.range_breakout_volume(high, low, np.array([9.5, 10.5, 11.5, 10.5, 8.0]), volume, 3)
    assert down[4] == pytest.approx(-10 / 3)
    flat = ind.range_breakout_volume(high, low, close, np.array([0, 0, 0, 0, 5.0]), 3)
    assert np.isnan(flat[4]) and flat[3] == 0.0  # relative volume undefined after zero volume


def test_second_difference_shift_and_zscore() -> None:
    np.testing.assert_array_equal(
        ind.second_difference(np.array([1, 4, 9, 16.0])), [nan, nan, 2, 2]
    )
    np.testing.assert_array_equal(ind.shift(np.array([1, 2, 3.0]), 2), [nan, nan, 1])
    with pytest.raises(ValueError, match="read the future"):
        ind.shift(np.array([1.0]), 0)
    assert np.isnan(ind.zscore(np.ones(10), 5)[4:]).all()
    z = ind.zscore(np.array([1, 2, 3.0]), 3)
    assert z[2] == pytest.approx((3 - 2) / np.sqrt(2 / 3))


# --- independent reference: Wilder's definitions written out as loops -------------------------


def wilder(x: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder average: seed = mean of x[first:first+n], then avg = (avg*(n-1) + x)/n."""
    out = np.full(len(x), nan)
    avg = float(np.mean(x[first : first + n]))
    out[first + n - 1] = avg
    for t in range(first + n, len(x)):
        avg = (avg * (n - 1) + x[t]) / n
        out[t] = avg
    return out


def ref_rsi(c: np.ndarray, n: int) -> np.ndarray:
    d = np.diff(c, prepend=nan)
    g, loss = wilder(np.where(d > 0, d, 0.0), n, 1), wilder(np.where(d < 0, -d, 0.0), n, 1)
    return 100 * g / (g + loss)


def ref_true_range(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    pc = np.concatenate([[nan], c[:-1]])
    return np.maximum(h - lo, np.maximum(np.abs(h - pc), np.abs(lo - pc)))


def ref_dx_adx(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    up = np.diff(h, prepend=nan)
    down = -np.diff(lo, prepend=nan)
    pdm = np.where((up > down) & (up > 0), up, 0.0)
    mdm = np.where((down > up) & (down > 0), down, 0.0)
    tr = ref_true_range(h, lo, c)

    # TA-Lib seeds the smoothed sums with n-1 values and applies one Wilder step at bar n
    def smooth(x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), nan)
        s = float(np.sum(x[1:n]))
        for t in range(n, len(x)):
            s = s - s / n + x[t]
            out[t] = s
        return out

    sp, sm, st = smooth(pdm), smooth(mdm), smooth(tr)
    pdi, mdi = 100 * sp / st, 100 * sm / st
    dx = 100 * np.abs(pdi - mdi) / (pdi + mdi)
    return dx, wilder(dx, n, n)


@pytest.fixture(scope="module")
def btc() -> dict[str, np.ndarray]:
    f = pl.read_parquet(sample_path()).filter(pl.col("symbol") == "BTC/USDT").head(3000)
    return {c: f[c].to_numpy() for c in ("high", "low", "close")}


def test_wilder_indicators_match_reference_on_real_btc(btc: dict[str, np.ndarray]) -> None:
    h, lo, c = btc["high"], btc["low"], btc["close"]
    np.testing.assert_allclose(ind.rsi(c, 14)[14:], ref_rsi(c, 14)[14:], rtol=1e-9)
    np.testing.assert_allclose(
        ind.atr(h, lo, c, 14)[14:], wilder(ref_true_range(h, lo, c), 14, 1)[14:], rtol=1e-9
    )
    dx, adx = ref_dx_adx(h, lo, c, 14)
    np.testing.assert_allclose(ind.dx(h, lo, c, 14)[14:], dx[14:], rtol=1e-9)
    np.testing.assert_allclose(ind.adx(h, lo, c, 14)[27:], adx[27:], rtol=1e-9)


def test_ema_and_bollinger_match_definitions(btc: dict[str, np.ndarray]) -> None:
    c = btc["close"]
    ema = np.full(len(c), nan)
    ema[49] = c[:50].mean()
    for t in range(50, len(c)):
        ema[t] = ema[t - 1] + 2 / 51 * (c[t] - ema[t - 1])
    np.testing.assert_allclose(ind.ema(c, 50)[49:], ema[49:], rtol=1e-9)
    mid, up, lo = ind.bollinger(c, 20, 2.0)
    win = np.lib.stride_tricks.sliding_window_view(c, 20)
    np.testing.assert_allclose(mid[19:], win.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(up[19:], win.mean(axis=1) + 2 * win.std(axis=1), rtol=1e-9)
    np.testing.assert_allclose(lo[19:], win.mean(axis=1) - 2 * win.std(axis=1), rtol=1e-9)
