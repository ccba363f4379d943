"""Compute a feature set over many symbols at once: one pass per symbol on contiguous arrays.

Input: canonical bars sorted by (symbol, timestamp) and gap-free per symbol (fill
gaps first with :func:`cappuccino.data.validate.fill_gaps`): indicators on a series
with holes would silently mix different time spans. Output: ``timestamp``,
``symbol`` and the set's columns as Float64, nulls for warm-up and undefined values.
"""

from __future__ import annotations

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


def check_gap_free(bars: pl.DataFrame, timeframe: Timeframe | None = None) -> Timeframe:
    """Check each symbol's bars are sorted and exactly one interval apart; return the interval."""
    t = bars["timestamp"].dt.epoch("ms").to_numpy()
    segs = segments(bars)
    steps = np.diff(t)
    inner = np.ones(len(steps), dtype=bool)
    inner[[s.start - 1 for s in segs if s.start > 0]] = False
    inner_steps = steps[inner]
    if timeframe is None:
        if inner_steps.size == 0:
            raise ValueError("bars: need at least two bars of one symbol to know the interval")
        vals, counts = np.unique(inner_steps, return_counts=True)
        timeframe = Timeframe(int(vals[np.argmax(counts)]))
    bad = np.flatnonzero(inner & (steps != timeframe.ms))
    if bad.size:
        i = int(bad[0]) + 1
        row = bars.row(i, named=True)
        kind = (
            "out of order"
            if steps[bad[0]] <= 0
            else f"a gap of {steps[bad[0]] // timeframe.ms - 1} bars"
        )
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


def compute_features(
    bars: pl.DataFrame, feature_set: FeatureSet | str, *, timeframe: Timeframe | None = None
) -> tuple[pl.DataFrame, FeatureReport]:
    """Feature columns for every bar; see the module docstring for input requirements."""
    fs = get_feature_set(feature_set) if isinstance(feature_set, str) else feature_set
    if bars.height == 0:
        raise ValueError("bars: empty frame")
    check_gap_free(bars, timeframe)
    segs = segments(bars)
    t = bars["timestamp"].dt.epoch("ms").to_numpy()
    o, h, lo, c, v = (_float_column(bars, x) for x in ("open", "high", "low", "close", "volume"))
    out = {name: np.empty(bars.height, dtype=np.float64) for name in fs.columns}
    report = FeatureReport(feature_set=fs.name, rows=bars.height, symbols=len(segs))
    warm = dict.fromkeys(fs.columns, 0)
    nulls = dict.fromkeys(fs.columns, 0)
    for seg in segs:
        sl = slice(seg.start, seg.stop)
        cols = fs.compute(SeriesBars(t[sl], o[sl], h[sl], lo[sl], c[sl], v[sl]))
        if set(cols) != set(fs.columns):
            raise RuntimeError(
                f"feature set {fs.name}: compute returned {sorted(cols)}, "
                f"expected {sorted(fs.columns)}"
            )
        for name in fs.columns:
            col = cols[name]
            valid = np.isfinite(col)
            first = int(np.argmax(valid)) if valid.any() else len(col)
            warm[name] = max(warm[name], first)
            nulls[name] += int((~valid[first:]).sum())
            out[name][sl] = col
    report.warmup_bars, report.nulls_after_warmup = warm, nulls
    frame = bars.select("timestamp", "symbol").with_columns(
        pl.Series(name, np.where(np.isfinite(arr), arr, np.nan), nan_to_null=True)
        for name, arr in out.items()
    )
    return frame, report
