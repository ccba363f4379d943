"""Named feature sets: a registry from name to column list and a per-symbol compute function.

Each compute function receives one symbol's gap-free bars as numpy arrays
(:class:`SeriesBars`) and returns ``{column: array}`` with exactly the set's
columns. Time alignment for every set: the value at bar t uses bars up to and
including t (bar t's close is known when bar t ends); ``features audit`` checks it.

Multi-timeframe sets: ``<set>+<tf>[+<tf>...]`` (e.g. ``cappuccino14+4h+1d``) are the set's
columns on the bars themselves, then the same columns computed on each longer timeframe's
bars and named ``<column>@<tf>`` (``rsi_14@4h``). The longer bars are built from the
symbol's own bars with the rule of ``cappuccino data resample`` (UTC-aligned buckets, only
complete ones). A row carries the longer timeframe's values of the last bucket *closed* when
the row's bar closes: the 4h bar 08:00-12:00 is visible from the 1h bar that closes at
12:00 (opens 11:00) on, never earlier; before the first complete bucket they are null.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from cappuccino.config.models import FEATURE_SET_NAMES, parse_feature_set_name
from cappuccino.data.resample import bucket_start, check_timeframes
from cappuccino.features import indicators as ind
from cappuccino.features.indicators import F64
from cappuccino.market.timeframe import Timeframe


@dataclass(frozen=True)
class SeriesBars:
    """One symbol's bars, oldest first, one ``step_ms`` apart. ``time_ms`` is the bar open
    time in epoch ms (UTC)."""

    time_ms: np.ndarray
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    step_ms: int


ComputeFn = Callable[[SeriesBars], dict[str, F64]]


@dataclass(frozen=True)
class FeatureSet:
    """A named, ordered list of feature columns and the function that computes them."""

    name: str
    columns: tuple[str, ...]
    compute: ComputeFn
    description: str


FEATURE_SETS: dict[str, FeatureSet] = {}


def register(fs: FeatureSet) -> FeatureSet:
    """Add ``fs`` to the registry; a name can be registered once, and only a name that configs
    accept (:data:`cappuccino.config.models.FEATURE_SET_NAMES`)."""
    if fs.name in FEATURE_SETS:
        raise ValueError(f"feature set {fs.name!r} is already registered")
    if fs.name not in FEATURE_SET_NAMES:
        raise ValueError(
            f"feature set {fs.name!r}: add it to cappuccino.config.models.FEATURE_SET_NAMES"
        )
    FEATURE_SETS[fs.name] = fs
    return fs


@cache
def feature_set_hash(name: str) -> str:
    """SHA-256 of what defines set ``name``'s values: its columns, the source of its compute
    function and of the indicator module it calls (for a multi-timeframe set also of the
    code that builds and aligns the longer bars). A bundle records it; loading refuses a
    bundle whose features are no longer computed as they were in training."""
    fs = get_feature_set(name)
    base = FEATURE_SETS[parse_feature_set_name(name)[0]]
    parts = [fs.name, "\n".join(fs.columns), inspect.getsource(base.compute),
             inspect.getsource(ind)]  # fmt: skip
    if fs is not base:
        parts += [inspect.getsource(_multi_timeframe), inspect.getsource(bucket_start)]
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


@cache
def get_feature_set(name: str) -> FeatureSet:
    """Look up a registered set, or build the multi-timeframe set ``<set>+<tf>...`` (module
    docstring); a bad name says what is available."""
    try:
        base, higher = parse_feature_set_name(name)
    except ValueError as e:
        raise ValueError(f"feature set: {e}") from None
    if not higher:
        return FEATURE_SETS[base]
    return _multi_timeframe(FEATURE_SETS[base], higher)


def higher_timeframe_bars(
    b: SeriesBars, target: Timeframe, *, name: str = "feature set"
) -> tuple[SeriesBars, np.ndarray]:
    """The complete ``target`` buckets of gap-free bars ``b`` (``cappuccino data resample``'s
    rule), and for each bar of ``b`` the index of the last bucket closed when that bar
    closes (-1 before the first). ``name``: the set, for the error when ``target`` does not
    fit the bars' timeframe."""
    k = check_timeframes(Timeframe(b.step_ms), target, target_name=f"{name}: +{target.label}",
                         source_name="the bars' timeframe")  # fmt: skip
    t = np.asarray(b.time_ms, dtype=np.int64)
    buckets = bucket_start(t, target)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    counts = np.diff(np.r_[starts, len(t)])
    full = counts == k  # gap-free bars: only the first and the last bucket can be partial
    first = starts[full]
    last = first + k - 1
    if first.size:
        high = np.maximum.reduceat(b.high, starts)[full]
        low = np.minimum.reduceat(b.low, starts)[full]
        volume = np.add.reduceat(b.volume, starts)[full]
    else:
        high = low = volume = np.empty(0)
    hb = SeriesBars(buckets[first], b.open[first], high, low, b.close[last], volume, target.ms)
    visible = np.searchsorted(hb.time_ms + target.ms, t + b.step_ms, side="right") - 1
    return hb, visible


def _multi_timeframe(base: FeatureSet, higher: tuple[Timeframe, ...]) -> FeatureSet:
    """``base`` on the bars, then on each of the ``higher`` timeframes (module docstring)."""
    suffixes = [f"@{tf.label}" for tf in higher]
    name = "+".join([base.name, *(tf.label for tf in higher)])

    def compute(b: SeriesBars) -> dict[str, F64]:
        out = dict(base.compute(b))
        for tf, suffix in zip(higher, suffixes, strict=True):
            hb, visible = higher_timeframe_bars(b, tf, name=f"feature set {name}")
            cols = base.compute(hb) if len(hb.time_ms) else {}
            seen = visible >= 0
            for c in base.columns:
                col = np.full(len(visible), np.nan)
                if len(hb.time_ms):
                    col[seen] = cols[c][visible[seen]]
                out[c + suffix] = col
        return out

    return FeatureSet(
        name=name,
        columns=base.columns + tuple(c + s for s in suffixes for c in base.columns),
        compute=compute,
        description=f"{base.name} on the bars and on the last closed "
        f"{', '.join(tf.label for tf in higher)} bars",
    )


def _ohlcv(b: SeriesBars) -> dict[str, F64]:
    """The bar itself, passed through (the same arrays, not copies)."""
    return {"open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume}


def _cappuccino14(b: SeriesBars) -> dict[str, F64]:
    m, s, h = ind.macd(b.close, 12, 26, 9)
    adx = ind.adx(b.high, b.low, b.close, 14)
    return {
        **_ohlcv(b),
        "macd": m,
        "macd_signal": s,
        "macd_hist": h,
        "rsi_14": ind.rsi(b.close, 14),
        "cci_14": ind.cci(b.high, b.low, b.close, 14),
        "dx_14": ind.dx(b.high, b.low, b.close, 14),
        "atr_regime_shift": ind.atr_regime_shift(b.high, b.low, b.close, 14, 50),
        "range_breakout_volume": ind.range_breakout_volume(b.high, b.low, b.close, b.volume, 20),
        "adx_reacceleration": ind.second_difference(adx),
    }


def _price_action14(b: SeriesBars) -> dict[str, F64]:
    mid, up, lo = ind.bollinger(b.close, 20, 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = (up - lo) / mid
        pct = np.where(up > lo, (b.close - lo) / (up - lo), np.nan)
    return {
        **_ohlcv(b),
        "rsi_14": ind.rsi(b.close, 14),
        "atr_14": ind.atr(b.high, b.low, b.close, 14),
        "ema_50": ind.ema(b.close, 50),
        "ema_200": ind.ema(b.close, 200),
        "bb_middle": mid,
        "bb_upper": up,
        "bb_lower": lo,
        "bb_width": width,
        "bb_percent": pct,
    }


NN23_DOC = {
    "logret_1": "ln(close_t / close_{t-1})",
    "logret_4": "ln(close_t / close_{t-4})",
    "logret_24": "ln(close_t / close_{t-24})",
    "logret_168": "ln(close_t / close_{t-168})",
    "vol_24": "population std of logret_1 over 24 bars",
    "vol_168": "population std of logret_1 over 168 bars",
    "hl_range": "ln(high_t / low_t), the bar's range",
    "oc_body": "ln(close_t / open_t), the bar's body",
    "rsi_14_c": "RSI(14) / 100 - 0.5, centred on 0",
    "cci_14_s": "CCI(14) / 100",
    "macd_hist_n": "MACD(12,26,9) histogram / close_t",
    "atr_14_n": "ATR(14) / close_t",
    "bb_percent": "(close - lower) / (upper - lower), Bollinger(20, 2)",
    "bb_width": "(upper - lower) / middle, Bollinger(20, 2)",
    "adx_14_c": "ADX(14) / 100",
    "dist_ema_50": "ln(close_t / EMA50_t)",
    "dist_ema_200": "ln(close_t / EMA200_t)",
    "volume_z_24": "z-score of ln(1 + volume) against its 24-bar mean and population std",
    "volume_z_168": "z-score of ln(1 + volume) against its 168-bar mean and population std",
    "hour_sin": "sin(2 pi hour / 24) of the bar open time (UTC)",
    "hour_cos": "cos(2 pi hour / 24) of the bar open time (UTC)",
    "dow_sin": "sin(2 pi weekday / 7), Monday = 0, of the bar open time (UTC)",
    "dow_cos": "cos(2 pi weekday / 7), Monday = 0, of the bar open time (UTC)",
}


def _nn23(b: SeriesBars) -> dict[str, F64]:
    c = b.close
    r1 = ind.log_return(c, 1)
    _, _, hist = ind.macd(c, 12, 26, 9)
    mid, up, lo = ind.bollinger(c, 20, 2.0)
    logv = np.log1p(b.volume)
    hours = (b.time_ms // 3_600_000) % 24
    days = (b.time_ms // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "logret_1": r1,
            "logret_4": ind.log_return(c, 4),
            "logret_24": ind.log_return(c, 24),
            "logret_168": ind.log_return(c, 168),
            "vol_24": ind.rolling_std(r1, 24),
            "vol_168": ind.rolling_std(r1, 168),
            "hl_range": np.log(b.high / b.low),
            "oc_body": np.log(c / b.open),
            "rsi_14_c": ind.rsi(c, 14) / 100.0 - 0.5,
            "cci_14_s": ind.cci(b.high, b.low, c, 14) / 100.0,
            "macd_hist_n": hist / c,
            "atr_14_n": ind.atr(b.high, b.low, c, 14) / c,
            "bb_percent": np.where(up > lo, (c - lo) / (up - lo), np.nan),
            "bb_width": (up - lo) / mid,
            "adx_14_c": ind.adx(b.high, b.low, c, 14) / 100.0,
            "dist_ema_50": np.log(c / ind.ema(c, 50)),
            "dist_ema_200": np.log(c / ind.ema(c, 200)),
            "volume_z_24": ind.zscore(logv, 24),
            "volume_z_168": ind.zscore(logv, 168),
            "hour_sin": np.sin(2 * np.pi * hours / 24.0),
            "hour_cos": np.cos(2 * np.pi * hours / 24.0),
            "dow_sin": np.sin(2 * np.pi * days / 7.0),
            "dow_cos": np.cos(2 * np.pi * days / 7.0),
        }
    return out


CAPPUCCINO14 = register(
    FeatureSet(
        name="cappuccino14",
        columns=(
            "open",
            "high",
            "low",
            "close",
            "volume",
            "macd",
            "macd_signal",
            "macd_hist",
            "rsi_14",
            "cci_14",
            "dx_14",
            "atr_regime_shift",
            "range_breakout_volume",
            "adx_reacceleration",
        ),
        compute=_cappuccino14,
        description="The seed RL system's 14 columns: OHLCV, MACD(12,26,9), RSI/CCI/DX(14), ATR regime "
        "shift, range-breakout volume (previous 20 bars), ADX(14) second difference.",
    )
)
PRICE_ACTION14 = register(
    FeatureSet(
        name="price_action14",
        columns=(
            "open",
            "high",
            "low",
            "close",
            "volume",
            "rsi_14",
            "atr_14",
            "ema_50",
            "ema_200",
            "bb_middle",
            "bb_upper",
            "bb_lower",
            "bb_width",
            "bb_percent",
        ),
        compute=_price_action14,
        description="Seed 003's 14 columns: OHLCV, RSI(14), ATR(14), EMA 50/200, Bollinger(20, 2) "
        "middle/upper/lower, width = (upper-lower)/middle, percent = (close-lower)/(upper-lower).",
    )
)
NN23 = register(
    FeatureSet(
        name="nn23",
        columns=tuple(NN23_DOC),
        compute=_nn23,
        description="23 scale-free features for pooling many assets: log returns (1/4/24/168 bars), "
        "volatility, bar shape, normalised indicators, volume z-scores, time encodings.",
    )
)
