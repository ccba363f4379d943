"""Compute a feature set over many symbols at once: one pass per symbol on contiguous arrays.

Input: canonical bars sorted by (symbol, timestamp) and gap-free per symbol (fill
gaps first with :func:`cappuccino.data.validate.fill_gaps`): indicators on a series
with holes would silently mix different time spans. Output: ``timestamp``,
``symbol`` and the set's columns as Float64, nulls for warm-up and undefined values.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cappuccino.data.schema import Timeframe
from cappuccino.features.sets import FeatureSet, SeriesBars, get_feature_set


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of one symbol in a sorted frame."""

    symbol: str
    start: int
    stop: int


def segments(bars: pl.DataFrame) -> list[Segment]:
    """Contiguous per-symbol row ranges; raises if a symbol's rows are not contiguous."""
    runs = bars["symbol"].rle()
    lengths = runs.struct.field("len").to_numpy()
    values = runs.struct.field("value").to_list()
    if len(set(values)) != len(values):
        raise ValueError("bars: rows of a symbol are not contiguous; sort by (symbol, timestamp)")
    stops = np.cumsum(lengths)
    starts = stops - lengths
    return [Segment(s, int(a), int(b)) for s, a, b in zip(values, starts, stops, strict=True)]


def _check_steps(
    bars: pl.DataFrame, t: np.ndarray, segs: list[Segment], timeframe: Timeframe | None
) -> Timeframe:
    """Check each symbol's bars are sorted and exactly one interval apart; return the interval."""
    steps = np.diff(t)
    inner = np.ones(len(steps), dtype=bool)
    inner[[s.start - 1 for s in segs if s.start > 0]] = False
    if timeframe is None:
        inner_steps = steps[inner]
        if inner_steps.size == 0:
            raise ValueError("bars: need at least two bars of one symbol to know the interval")
        vals, counts = np.unique(inner_steps, return_counts=True)
        timeframe = Timeframe(int(vals[np.argmax(counts)]))
    bad = np.flatnonzero(inner & (steps != timeframe.ms))
    if bad.size:
        i = int(bad[0]) + 1
        row = bars.row(i, named=True)
        step = int(steps[bad[0]])
        kind = "out of order" if step <= 0 else f"a gap of {step // timeframe.ms - 1} bars"
        raise ValueError(
            f"bars: {row['symbol']} at {row['timestamp']}: {kind} ({bad.size} irregular steps); "
            f"features need sorted, gap-free bars on a {timeframe} grid: fill gaps first "
            "(import with --on-gap fill, or fill_gaps())"
        )
    return timeframe


@dataclass
class FeatureReport:
    """Warm-up length (bars, worst symbol) and nulls after warm-up, per column."""

    feature_set: str
    rows: int
    symbols: int
    warmup_bars: dict[str, int] = field(default_factory=dict)
    nulls_after_warmup: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_set": self.feature_set,
            "rows": self.rows,
            "symbols": self.symbols,
            "warmup_bars": self.warmup_bars,
            "nulls_after_warmup": self.nulls_after_warmup,
        }


def _float_column(bars: pl.DataFrame, name: str) -> np.ndarray:
    return np.ascontiguousarray(bars[name].cast(pl.Float64).to_numpy())


def _null_stats(arr: np.ndarray) -> tuple[int, int]:
    """Turn +-inf into NaN in place; return (warm-up length, NaNs after the warm-up)."""
    good = np.isfinite(arr)
    n_good = int(np.count_nonzero(good))
    if n_good == len(arr):
        return 0, 0
    if n_good + int(np.count_nonzero(np.isnan(arr))) != len(arr):
        arr[~good] = np.nan
    first = int(np.argmax(good)) if n_good else len(arr)
    return first, len(arr) - n_good - first


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One process-wide pool, one thread per usable core (TA-Lib and polars release the GIL)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(1, min(8, len(os.sched_getaffinity(0))))
            _POOL = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="cappuccino-features"
            )
        return _POOL


def _compute_segment(
    fs: FeatureSet, sb: SeriesBars
) -> tuple[pl.DataFrame, dict[str, tuple[int, int]]]:
    cols = fs.compute(sb)
    if cols.keys() != set(fs.columns):
        raise RuntimeError(
            f"feature set {fs.name}: compute returned {sorted(cols)}, expected {sorted(fs.columns)}"
        )
    inputs = (sb.open, sb.high, sb.low, sb.close, sb.volume)  # validated finite on import
    stats = {
        name: _null_stats(cols[name])
        for name in fs.columns
        if not any(cols[name] is x for x in inputs)
    }
    # Hand the symbol's small arrays to polars right away: numpy's blocks are then reused for
    # the next symbol instead of faulting in fresh pages for one big output array.
    return pl.DataFrame({name: cols[name] for name in fs.columns}), stats


def compute_features(
    bars: pl.DataFrame, feature_set: FeatureSet | str, *, timeframe: Timeframe | None = None
) -> tuple[pl.DataFrame, FeatureReport]:
    """Feature columns for every bar; see the module docstring for input requirements.

    Symbols are computed in parallel threads (the kernels release the GIL); each symbol's
    result depends only on its own bars, and parts are joined in input order, so the
    output is identical whatever the thread count.
    """
    fs = get_feature_set(feature_set) if isinstance(feature_set, str) else feature_set
    if bars.height == 0:
        raise ValueError("bars: empty frame")
    t = bars["timestamp"].dt.epoch("ms").to_numpy()
    segs = segments(bars)
    step = _check_steps(bars, t, segs, timeframe).ms
    o, h, lo, c, v = (_float_column(bars, x) for x in ("open", "high", "low", "close", "volume"))
    series = [
        SeriesBars(t[sl], o[sl], h[sl], lo[sl], c[sl], v[sl], step)
        for sl in (slice(seg.start, seg.stop) for seg in segs)
    ]
    if len(series) > 1:
        results = list(_pool().map(lambda sb: _compute_segment(fs, sb), series))
    else:
        results = [_compute_segment(fs, series[0])]
    report = FeatureReport(feature_set=fs.name, rows=bars.height, symbols=len(segs))
    report.warmup_bars = dict.fromkeys(fs.columns, 0)
    report.nulls_after_warmup = dict.fromkeys(fs.columns, 0)
    for _, stats in results:
        for name, (warm, nulls) in stats.items():
            report.warmup_bars[name] = max(report.warmup_bars[name], warm)
            report.nulls_after_warmup[name] += nulls
    with_nans = [n for n in fs.columns if report.warmup_bars[n] or report.nulls_after_warmup[n]]
    frame = pl.concat([r[0] for r in results], how="vertical", rechunk=False).with_columns(
        pl.col(with_nans).fill_nan(None)
    )
    return pl.concat([bars.select("timestamp", "symbol"), frame], how="horizontal"), report
