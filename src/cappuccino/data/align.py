"""Multi-asset alignment: one common calendar for a universe, with per-symbol fill flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from cappuccino.data.schema import Timeframe
from cappuccino.data.validate import fill_gaps


@dataclass
class AlignReport:
    """Calendar bounds and the bars each symbol needed filled (or lost) to fit it."""

    start: datetime
    end: datetime
    bars_per_symbol: int
    filled_bars: dict[str, int] = field(default_factory=dict)
    bars_before_start: dict[str, int] = field(default_factory=dict)
    bars_after_end: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "bars_per_symbol": self.bars_per_symbol,
            "filled_bars": self.filled_bars,
            "bars_before_start": self.bars_before_start,
            "bars_after_end": self.bars_after_end,
        }


def align_universe(bars: pl.DataFrame, timeframe: Timeframe) -> tuple[pl.DataFrame, AlignReport]:
    """Put every symbol on the calendar from the latest first bar to the earliest last bar.

    Inside the calendar, a symbol's missing bars are filled (close carried forward,
    zero volume, ``filled=True``); bars outside it are dropped; both are counted.
    Output is sorted by (symbol, timestamp) with identical timestamps per symbol.
    """
    if bars.height == 0:
        raise ValueError("align_universe: no bars")
    bounds = bars.group_by("symbol").agg(
        pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last")
    )
    start, end = bounds["first"].max(), bounds["last"].min()
    if not isinstance(start, datetime) or not isinstance(end, datetime) or start > end:
        raise ValueError(
            f"align_universe: symbols do not overlap in time (latest first bar {start!r}, "
            f"earliest last bar {end!r})"
        )
    before = bars.group_by("symbol").agg((pl.col("timestamp") < start).sum())
    after = bars.group_by("symbol").agg((pl.col("timestamp") > end).sum())
    filled, _ = fill_gaps(
        bars.filter(pl.col("timestamp") <= end).sort(["symbol", "timestamp"]), timeframe
    )
    out = filled.filter(pl.col("timestamp") >= start)
    n_filled = out.group_by("symbol").agg(pl.col("filled").sum())
    n = out.group_by("symbol").len()["len"].unique()
    if n.len() != 1:
        raise RuntimeError(f"align_universe: unequal bar counts after alignment {n.to_list()}")
    report = AlignReport(
        start=start,
        end=end,
        bars_per_symbol=int(n[0]),
        filled_bars={s: int(v) for s, v in n_filled.iter_rows()},
        bars_before_start={s: int(v) for s, v in before.iter_rows()},
        bars_after_end={s: int(v) for s, v in after.iter_rows()},
    )
    return out, report
