"""Stored bars of one timeframe as bars of a longer one (``cappuccino data resample``).

A target bar (a *bucket*) spans ``target / source`` source bars. Buckets are aligned on
UTC epoch multiples of the target (4h at 00:00, 04:00, ...; 1d at 00:00 UTC), weeks on
Mondays 00:00 UTC, as Binance aligns its candles; its timestamp is its open time, like
every stored bar. Per bucket: open = the first bar's open, high = the highest high, low =
the lowest low, close = the last bar's close, volume, quote volume and trades summed
(null when a bar in the bucket has none).

A bucket is stored only when it is complete: every one of its source bars is in the
store. When some of them are gap-filled bars (``filled``), the bucket is stored with
``filled`` set and counted as such. A bucket with a missing source bar is not stored and
is counted (``incomplete``); the last bucket, still open when the data ends inside it, is
never stored and is reported (``open_bucket``). Writing goes through the store's upsert,
so a second run over the same bars writes nothing, and a later run after new bars were
imported adds the buckets that have completed since.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl

from cappuccino.data.schema import (
    CANONICAL_COLUMNS,
    CANONICAL_SCHEMA,
    Timeframe,
    resolve_symbols,
)
from cappuccino.data.store import ParquetStore

WEEK_MS = 7 * 86_400_000
_Times = TypeVar("_Times", pl.Expr, np.ndarray)
MONDAY_OFFSET_MS = 4 * 86_400_000  # 1970-01-01 was a Thursday; 1970-01-05 a Monday


@dataclass
class ResampleResult:
    """What resampling one symbol did (counts are bars of the target timeframe, except
    ``source_bars``)."""

    symbol: str
    source: str
    target: str
    source_bars: int
    complete: int
    filled: int
    incomplete: int
    open_bucket: str | None
    rows_new: int
    rows_updated: int
    rows_stored: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_timeframes(
    source: Timeframe, target: Timeframe, *, target_name: str = "--to",
    source_name: str = "--from",
) -> int:  # fmt: skip
    """Source bars per target bar; ``ValueError`` naming ``target_name`` unless the target
    is a whole multiple (>= 2) of the source that aligns on UTC days or weeks."""
    if target.ms <= source.ms or target.ms % source.ms:
        raise ValueError(
            f"{target_name}: got {target.label}, expected a whole multiple of {source_name} "
            f"{source.label} (at least twice as long)"
        )
    day = 86_400_000
    if not (day % target.ms == 0 or (target.ms % day == 0 and target.ms <= WEEK_MS)
            or target.ms % WEEK_MS == 0):  # fmt: skip
        raise ValueError(
            f"{target_name}: got {target.label}, expected a timeframe that divides a day "
            "(such as 4h) or whole days up to a week, or whole weeks"
        )
    return target.ms // source.ms


def bucket_start(epoch_ms: _Times, target: Timeframe) -> _Times:
    """The open time (epoch ms) of the ``target`` bucket holding each ``epoch_ms`` (a polars
    expression or an integer numpy array)."""
    offset = MONDAY_OFFSET_MS if target.ms % WEEK_MS == 0 else 0
    return ((epoch_ms - offset) // target.ms) * target.ms + offset


def resample_bars(
    bars: pl.DataFrame, source: Timeframe, target: Timeframe
) -> tuple[pl.DataFrame, dict[str, dict[str, Any]]]:
    """Complete buckets of canonical ``bars`` (one or more symbols, ``source`` timeframe)
    in the canonical schema, and per symbol the counts (module docstring)."""
    k = check_timeframes(source, target)
    ms = pl.col("timestamp").dt.epoch("ms")
    sums = ("volume", "quote_volume", "trades")
    grouped = (
        bars.sort("symbol", "timestamp")
        .with_columns(bucket_start(ms, target).alias("_bucket"))
        .group_by("symbol", "_bucket", maintain_order=True)
        .agg(
            pl.col("open").first(), pl.col("high").max(), pl.col("low").min(),
            pl.col("close").last(),
            *(pl.when(pl.col(c).null_count() == 0).then(pl.col(c).sum()).alias(c)
              for c in sums),
            pl.col("filled").any(), pl.len().alias("_n"),
            ms.max().alias("_last"),
        )
    )  # fmt: skip
    ends = bars.group_by("symbol").agg(pl.col("timestamp").dt.epoch("ms").max().alias("_end"))
    grouped = grouped.join(ends, on="symbol")
    # the last bucket is still open when the data ends before its last source bar
    last_bar = pl.col("_bucket") + target.ms - source.ms
    is_open = (pl.col("_bucket") == pl.col("_bucket").max().over("symbol")) & (
        pl.col("_end") < last_bar
    )
    grouped = grouped.with_columns((pl.col("_n") == k).alias("_complete"), is_open.alias("_open"))
    report: dict[str, dict[str, Any]] = {}
    for sym in grouped["symbol"].unique(maintain_order=True).to_list():
        g = grouped.filter(pl.col("symbol") == sym)
        done = g.filter(pl.col("_complete"))
        opened = g.filter(pl.col("_open") & ~pl.col("_complete"))
        report[sym] = {
            "source_bars": int(g["_n"].sum()),
            "complete": done.height,
            "filled": int(done["filled"].sum()),
            "incomplete": g.height - done.height - opened.height,
            "open_bucket": None if opened.is_empty() else
            pl.select(pl.lit(opened["_bucket"][0]).cast(pl.Datetime("ms", "UTC"))).item()
            .isoformat(),
        }  # fmt: skip
    out = (
        grouped.filter(pl.col("_complete"))
        .with_columns(
            pl.col("_bucket").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").alias("timestamp")
        )
        .select(CANONICAL_COLUMNS)
        .cast(dict(CANONICAL_SCHEMA))  # type: ignore[arg-type]
    )
    return out, report


def resample_store(
    store: ParquetStore, source: Timeframe, target: Timeframe, symbols: list[str] | None = None
) -> list[ResampleResult]:
    """Resample the stored ``source`` bars of ``symbols`` (all when None) into the store's
    ``target`` partitions (module docstring); one result per symbol."""
    check_timeframes(source, target)
    stored = store.symbols(source)
    if not stored:
        raise ValueError(
            f"--from: no {source.label} bars in store {store.root} (stored timeframes: "
            f"{[t.label for t in store.timeframes()]})"
        )
    wanted = resolve_symbols(symbols, stored)  # an unknown symbol fails before any write
    results = []
    for sym in wanted:  # one symbol in memory at a time
        buckets, report = resample_bars(store.read(source, [sym]), source, target)
        r = report.get(sym) or {"source_bars": 0, "complete": 0, "filled": 0,
                                "incomplete": 0, "open_bucket": None}  # fmt: skip
        new = updated = 0
        if buckets.height:
            (up,) = store.upsert(buckets, target)
            new, updated, kept = up.rows_new, up.rows_updated, up.rows_stored
        else:
            have = store.path(sym, target).exists()
            kept = store.read_symbol(sym, target).height if have else 0
        results.append(ResampleResult(symbol=sym, source=source.label, target=target.label,
                                      **r, rows_new=new, rows_updated=updated,
                                      rows_stored=kept))  # fmt: skip
    return sorted(results, key=lambda r: r.symbol)
