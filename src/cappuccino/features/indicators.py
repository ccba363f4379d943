"""Indicator kernels: pure functions of one symbol's contiguous, gap-free bar arrays.

Every function takes 1-D float64 arrays of equal length (oldest first) and returns
arrays of the same length. Time alignment: the value at index t uses bars 0..t
only (causal). Warm-up values, where the window is not yet full, are NaN (the
pipeline turns them into nulls; never zero).

The standard indicators call TA-Lib's C kernels and so match TA-Lib's
definitions exactly: Wilder smoothing (alpha = 1/n, seeded with the simple mean
of the first window) for RSI, ATR, +DI/-DI, DX and ADX; EMAs seeded with the SMA
of their first window; population standard deviation for Bollinger bands; CCI's
mean absolute deviation around the window mean with Lambert's 0.015 constant.

Units are given per function: "price" means the quote currency of the input.
"""

from __future__ import annotations

import numpy as np
import talib
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def shift(x: F64, k: int) -> F64:
    """``x`` delayed by ``k`` >= 1 bars: ``out[t] = x[t-k]``, NaN for ``t < k``."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (a shift of {k} would read the future)")
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[:-k]
    return out


def log_return(close: F64, k: int = 1) -> F64:
    """Log return over ``k`` bars, ``ln(close[t] / close[t-k])`` (dimensionless)."""
    return np.log(close / shift(close, k))


def sma(x: F64, n: int) -> F64:
    """Simple moving average over ``n`` bars (units of ``x``)."""
    return np.asarray(talib.SMA(x, timeperiod=n))


def ema(x: F64, n: int) -> F64:
    """Exponential moving average, alpha = 2/(n+1), seeded with the SMA of the first ``n`` values."""
    return np.asarray(talib.EMA(x, timeperiod=n))


def rolling_std(x: F64, n: int) -> F64:
    """Population standard deviation (ddof=0) over ``n`` bars (units of ``x``)."""
    return np.asarray(talib.STDDEV(x, timeperiod=n, nbdev=1.0))


def rolling_max(x: F64, n: int) -> F64:
    """Maximum over the ``n`` bars ending at t (inclusive)."""
    return np.asarray(talib.MAX(x, timeperiod=n))


def rolling_min(x: F64, n: int) -> F64:
    """Minimum over the ``n`` bars ending at t (inclusive)."""
    return np.asarray(talib.MIN(x, timeperiod=n))


def rsi(close: F64, n: int = 14) -> F64:
    """Wilder's relative strength index, 0..100. First value at index ``n``."""
    return np.asarray(talib.RSI(close, timeperiod=n))


def macd(close: F64, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[F64, F64, F64]:
    """MACD line, signal line and histogram (price units). First value at ``slow + signal - 2``."""
    m, s, h = talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    return np.asarray(m), np.asarray(s), np.asarray(h)


def cci(high: F64, low: F64, close: F64, n: int = 14) -> F64:
    """Commodity channel index (dimensionless): (tp - SMA(tp)) / (0.015 * mean |tp - SMA(tp)|)."""
    return np.asarray(talib.CCI(high, low, close, timeperiod=n))


def atr(high: F64, low: F64, close: F64, n: int = 14) -> F64:
    """Average true range (price units), Wilder-smoothed. First value at index ``n``."""
    return np.asarray(talib.ATR(high, low, close, timeperiod=n))


def dx(high: F64, low: F64, close: F64, n: int = 14) -> F64:
    """Directional movement index, 0..100: 100 |+DI - -DI| / (+DI + -DI). First value at ``n``."""
    return np.asarray(talib.DX(high, low, close, timeperiod=n))


def adx(high: F64, low: F64, close: F64, n: int = 14) -> F64:
    """Average directional index, 0..100: Wilder average of DX. First value at ``2n - 1``."""
    return np.asarray(talib.ADX(high, low, close, timeperiod=n))


def bollinger(close: F64, n: int = 20, k: float = 2.0) -> tuple[F64, F64, F64]:
    """Bollinger middle (SMA), upper and lower bands (price units): SMA +/- k population stds."""
    # the stubs omit talib's public re-export of MA_Type
    sma_type = talib.MA_Type.SMA  # type: ignore[attr-defined]
    up, mid, lo = talib.BBANDS(close, timeperiod=n, nbdevup=k, nbdevdn=k, matype=sma_type)
    return np.asarray(mid), np.asarray(up), np.asarray(lo)


def atr_regime_shift(high: F64, low: F64, close: F64, n_atr: int = 14, n_mean: int = 50) -> F64:
    """(ATR_n - SMA_m(ATR_n)) / SMA_m(ATR_n): relative departure of volatility from its mean.

    Dimensionless. NaN where the mean ATR is zero (a flat stretch, e.g. a long filled gap).
    """
    a = atr(high, low, close, n_atr)
    m = sma(a, n_mean)
    out = np.full_like(a, np.nan)
    np.divide(a - m, m, out=out, where=m != 0.0)  # NaN stays NaN; a zero mean stays NaN
    return out


def range_breakout_volume(high: F64, low: F64, close: F64, volume: F64, n: int = 20) -> F64:
    """Signed relative volume on a breakout of the previous ``n`` bars' range.

    ``s * volume[t] / mean(volume[t-n..t-1])`` with ``s = +1`` if ``close[t]`` is above the
    highest high of bars ``t-n..t-1``, ``-1`` if below their lowest low, else 0. Only
    *previous* bars form the range: the system this replaces included bar t, so its
    close could never exceed the range and the feature was identically zero.
    Dimensionless; 0 with no breakout; NaN for a breakout after ``n`` zero-volume bars
    (relative volume undefined).
    """
    out = np.full(len(close), np.nan)
    if len(close) <= n:
        return out
    # value at t compares bar t with the window of bars t-n..t-1, i.e. the window ending at t-1
    prev_high = rolling_max(high, n)[n - 1 : -1]
    prev_low = rolling_min(low, n)[n - 1 : -1]
    prev_vol = sma(volume, n)[n - 1 : -1]
    c = close[n:]
    up = c > prev_high
    down = c < prev_low
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = volume[n:] / prev_vol
    res = np.zeros(len(c))
    res[up] = rel[up]
    res[down] = -rel[down]
    # an all-zero window is detected exactly by its maximum: TA-Lib's running-sum SMA can
    # leave a residue of ~1e-13 after a run of zeros, which would give ratios near 1e14
    prev_vol_max = rolling_max(volume, n)[n - 1 : -1]
    res[(up | down) & ~(prev_vol_max > 0)] = np.nan
    out[n:] = res
    return out


def second_difference(x: F64) -> F64:
    """``x[t] - 2 x[t-1] + x[t-2]`` (units of ``x`` per bar squared)."""
    out = np.full_like(x, np.nan)
    out[2:] = x[2:] - 2.0 * x[1:-1] + x[:-2]
    return out


def zscore(x: F64, n: int) -> F64:
    """``(x - SMA_n(x)) / std_n(x)`` with population std; NaN where the std is zero."""
    m = sma(x, n)
    s = rolling_std(x, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (x - m) / s
    out[~np.isfinite(out)] = np.nan
    return out
