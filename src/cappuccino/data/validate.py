"""Validation and repair of raw bars, per symbol, every finding counted.

Rules (each one is counted in :class:`SymbolReport`; nothing is silent):

- **Order**: input order is recorded (``ascending``, ``descending`` or
  ``unsorted`` with the number of out-of-order steps); output is sorted.
- **Duplicates** (same symbol and timestamp): *identical* rows collapse to one.
  *Conflicting* rows are resolved by the completed-candle rule: a candle's volume
  only grows while it is open, so a row whose volume is lower than another's by
  more than the rounding of the coarser row (half a unit in its last printed
  decimal) was captured before the close and is dropped. Rows equal up to that
  rounding are the same candle exported twice; the more precise one is kept
  (more volume decimals, then a non-null trade count, then the earlier line).
- **Interval**: the bar interval is the most common step between consecutive
  bars (or the one given) and every step must be a whole multiple of it.
- **Gaps**: counted (gaps, missing bars, longest); policy ``keep`` (default),
  ``fill`` (carry the close forward as open=high=low=close, zero volume and
  trades, ``filled=True``) or ``error``.
- **OHLC**: high below open/close, low above open/close, high below low, and
  non-positive prices are counted; policy ``keep`` (default), ``drop`` or ``error``.
- **Zero volume** bars are counted (they are real: no trade in that hour).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.readers._table import LINE, VOLUME_DECIMALS
from cappuccino.data.readers.base import RawBars
from cappuccino.data.schema import CANONICAL_COLUMNS, VALUE_COLUMNS, Timeframe

GapPolicy = Literal["fill", "keep", "error"]
OhlcPolicy = Literal["keep", "drop", "error"]
GROUP = ("symbol", "timestamp")
ORDER = "_order"  # global input order across sources: (source index, line)


@dataclass
class SymbolReport:
    """Everything validation found and did for one symbol. Counts are rows unless named *_bars."""

    symbol: str
    sources: list[str] = field(default_factory=list)
    rows_read: int = 0
    malformed_skipped: int = 0
    input_order: str = "ascending"
    out_of_order_steps: int = 0
    duplicates_removed: int = 0
    duplicates_identical: int = 0
    duplicates_conflicting: int = 0
    duplicates_incomplete_candle: int = 0
    unix_seconds_rows: int = 0
    date_unix_mismatch: int = 0
    gaps: int = 0
    missing_bars: int = 0
    longest_gap_bars: int = 0
    filled_bars: int = 0
    ohlc_inconsistent: int = 0
    nonpositive_prices: int = 0
    ohlc_dropped: int = 0
    zero_volume_bars: int = 0
    rows_valid: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first"] = self.first.isoformat() if self.first else None
        d["last"] = self.last.isoformat() if self.last else None
        return d


@dataclass
class CleanBars:
    """Validated bars (canonical columns, sorted by symbol then time) and what was done."""

    frame: pl.DataFrame
    timeframe: Timeframe
    reports: dict[str, SymbolReport]


def _per_symbol(frame: pl.DataFrame, **aggs: pl.Expr) -> dict[str, dict[str, Any]]:
    out = frame.group_by("symbol").agg(**aggs)
    return {row.pop("symbol"): row for row in out.iter_rows(named=True)}


def infer_timeframe(frame: pl.DataFrame) -> Timeframe:
    """Most common positive step between consecutive bars of each symbol (frame sorted)."""
    steps = frame.select(
        pl.col("timestamp").diff().over("symbol").dt.total_milliseconds().alias("d")
    )
    steps = steps.filter(pl.col("d") > 0)
    if steps.height == 0:
        raise DataError("bars", expected="at least two bars per symbol to infer the interval")
    mode = steps.group_by("d").len().sort(["len", "d"], descending=[True, False])["d"][0]
    return Timeframe(int(mode))


def fill_gaps(frame: pl.DataFrame, timeframe: Timeframe) -> tuple[pl.DataFrame, dict[str, int]]:
    """Insert the missing bars of each symbol between its first and last bar.

    A filled bar has open=high=low=close equal to the previous close, zero volume,
    quote volume and trades, and ``filled=True``. Returns the frame (canonical
    columns, sorted) and the number of bars inserted per symbol.
    """
    if frame.height == 0:
        return frame, {}
    every = f"{timeframe.ms}ms"
    calendar = (
        frame.group_by("symbol")
        .agg(
            pl.datetime_ranges(pl.col("timestamp").min(), pl.col("timestamp").max(), every).alias(
                "timestamp"
            )
        )
        .explode("timestamp")
    )
    calendar = calendar.with_columns(pl.col("timestamp").cast(frame.schema["timestamp"]))
    joined = calendar.join(frame, on=["symbol", "timestamp"], how="left").sort(GROUP)
    missing = pl.col("close").is_null()
    prev_close = pl.col("close").forward_fill().over("symbol")
    filled = joined.with_columns(
        *(
            pl.when(missing).then(prev_close).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close")
        ),
        *(
            pl.when(missing).then(pl.lit(0, dtype=joined.schema[c])).otherwise(pl.col(c)).alias(c)
            for c in ("volume", "quote_volume", "trades")
        ),
        pl.when(missing).then(True).otherwise(pl.col("filled")).alias("filled"),
    )
    counts = _per_symbol(joined, n=missing.sum())
    return filled.select(frame.columns), {s: int(v["n"]) for s, v in counts.items()}


def _dedupe(frame: pl.DataFrame, reports: dict[str, SymbolReport]) -> pl.DataFrame:
    n = pl.len().over(GROUP)
    v_max = pl.col("volume").max().over(GROUP)
    v_min = pl.col("volume").min().over(GROUP)
    tol = 0.5 * pl.lit(10.0).pow(-pl.col(VOLUME_DECIMALS).min().over(GROUP)) + 1e-12 * v_max
    frame = frame.with_columns(
        n.alias("_n"),
        (pl.col("volume") >= v_max - tol).alias("_complete"),
        ((v_max - v_min) > tol).alias("_by_volume"),
        pl.struct(VALUE_COLUMNS).n_unique().over(GROUP).alias("_variants"),
        pl.col("trades").is_not_null().alias("_has_trades"),
    )
    dup_groups = frame.filter(
        (pl.col("_n") > 1) & (pl.col(ORDER) == pl.col(ORDER).min().over(GROUP))
    )
    counts = _per_symbol(
        dup_groups,
        identical=(pl.col("_variants") == 1).sum(),
        conflicting=(pl.col("_variants") > 1).sum(),
        by_volume=((pl.col("_variants") > 1) & pl.col("_by_volume")).sum(),
        removed=(pl.col("_n") - 1).sum(),
    )
    for sym, c in counts.items():
        r = reports[sym]
        r.duplicates_identical += int(c["identical"])
        r.duplicates_conflicting += int(c["conflicting"])
        r.duplicates_incomplete_candle += int(c["by_volume"])
        r.duplicates_removed += int(c["removed"])
    ranked = frame.sort(
        ["symbol", "timestamp", "_complete", VOLUME_DECIMALS, "_has_trades", ORDER],
        descending=[False, False, True, True, True, False],
    )
    kept = ranked.unique(subset=list(GROUP), keep="first", maintain_order=True)
    return kept.drop("_n", "_complete", "_by_volume", "_variants", "_has_trades")


def _check_interval(frame: pl.DataFrame, timeframe: Timeframe, sources: list[str]) -> None:
    step = pl.col("timestamp").diff().over("symbol").dt.total_milliseconds()
    off = frame.with_columns(step.alias("_step")).filter(
        pl.col("_step").is_not_null() & (pl.col("_step") % timeframe.ms != 0)
    )
    if off.height:
        row = off.row(0, named=True)
        raise DataError(
            sources[row["_src"]],
            line=row[LINE],
            column="timestamp",
            value=str(row["timestamp"]),
            expected=f"bars on a {timeframe} grid",
            detail=f"step {row['_step']} ms from the previous bar; {off.height} off-grid bars",
        )


def clean_bars(
    raws: list[RawBars],
    *,
    timeframe: Timeframe | None = None,
    on_gap: GapPolicy = "keep",
    on_bad_ohlc: OhlcPolicy = "keep",
) -> CleanBars:
    """Validate and repair bars from one or more sources; see the module docstring for the rules."""
    if on_gap not in ("fill", "keep", "error"):
        raise ValueError(f"on_gap: got {on_gap!r}, expected fill, keep or error")
    if on_bad_ohlc not in ("keep", "drop", "error"):
        raise ValueError(f"on_bad_ohlc: got {on_bad_ohlc!r}, expected keep, drop or error")
    if not raws:
        raise ValueError("clean_bars: no sources given")
    reports: dict[str, SymbolReport] = {}
    sources = [raw.source for raw in raws]
    frames = []
    for i, raw in enumerate(raws):
        f = raw.frame.with_columns(pl.lit(i, dtype=pl.Int32).alias("_src"))
        syms = f["symbol"].unique().to_list()
        for s in syms:
            r = reports.setdefault(s, SymbolReport(symbol=s))
            r.sources.append(raw.source)
        if len(syms) == 1:  # file-level counters belong to that symbol
            r = reports[syms[0]]
            r.rows_read += raw.rows_read
            r.malformed_skipped += raw.malformed_skipped
            r.unix_seconds_rows += raw.unix_seconds_rows
            r.date_unix_mismatch += raw.date_unix_mismatch
        else:
            for s, c in _per_symbol(f, n=pl.len()).items():
                reports[s].rows_read += int(c["n"])
        frames.append(f)
    frame = pl.concat(frames, how="vertical")
    frame = frame.with_columns((pl.col("_src").cast(pl.Int64) * 10**12 + pl.col(LINE)).alias(ORDER))

    in_order = frame.sort(["symbol", ORDER])
    d = pl.col("timestamp").diff().over("symbol").dt.total_milliseconds()
    for sym, c in _per_symbol(in_order, down=(d < 0).sum(), up=(d > 0).sum()).items():
        down, up = int(c["down"]), int(c["up"])
        r = reports[sym]
        r.input_order = "ascending" if down == 0 else "descending" if up == 0 else "unsorted"
        r.out_of_order_steps = 0 if r.input_order != "unsorted" else min(up, down)

    frame = _dedupe(frame, reports).sort(GROUP)
    tf = timeframe or infer_timeframe(frame)
    _check_interval(frame, tf, sources)

    step = pl.col("timestamp").diff().over("symbol").dt.total_milliseconds() // tf.ms - 1
    gaps = frame.with_columns(step.alias("_missing")).filter(pl.col("_missing") > 0)
    for sym, c in _per_symbol(
        gaps, n=pl.len(), missing=pl.col("_missing").sum(), longest=pl.col("_missing").max()
    ).items():
        r = reports[sym]
        r.gaps, r.missing_bars, r.longest_gap_bars = (
            int(c["n"]),
            int(c["missing"]),
            int(c["longest"]),
        )
    if on_gap == "error" and gaps.height:
        row = gaps.row(0, named=True)
        raise DataError(
            sources[row["_src"]],
            line=row[LINE],
            column="timestamp",
            value=str(row["timestamp"]),
            expected="no gaps (on_gap='error')",
            detail=f"{row['_missing']} missing bars before this one; {gaps.height} gaps in all",
        )

    o, h, lo, cl = (pl.col(x) for x in ("open", "high", "low", "close"))
    inconsistent = (h < pl.max_horizontal(o, cl)) | (lo > pl.min_horizontal(o, cl)) | (h < lo)
    nonpositive = pl.min_horizontal(o, h, lo, cl) <= 0
    frame = frame.with_columns(inconsistent.alias("_bad_ohlc"), nonpositive.alias("_nonpos"))
    for sym, cnt in _per_symbol(
        frame,
        bad=pl.col("_bad_ohlc").sum(),
        nonpos=pl.col("_nonpos").sum(),
        zero=(pl.col("volume") == 0).sum(),
    ).items():
        r = reports[sym]
        r.ohlc_inconsistent, r.nonpositive_prices = int(cnt["bad"]), int(cnt["nonpos"])
        r.zero_volume_bars = int(cnt["zero"])
    bad_rows = frame.filter(pl.col("_bad_ohlc") | pl.col("_nonpos"))
    if bad_rows.height and on_bad_ohlc == "error":
        row = bad_rows.row(0, named=True)
        raise DataError(
            sources[row["_src"]],
            line=row[LINE],
            value={k: row[k] for k in ("open", "high", "low", "close")},
            expected="low <= open, close <= high and positive prices",
            detail=f"{bad_rows.height} such bars",
        )
    if on_bad_ohlc == "drop" and bad_rows.height:
        for sym, cnt in _per_symbol(bad_rows, n=pl.len()).items():
            reports[sym].ohlc_dropped = int(cnt["n"])
        frame = frame.filter(~(pl.col("_bad_ohlc") | pl.col("_nonpos")))

    frame = frame.select(CANONICAL_COLUMNS)
    if on_gap == "fill":
        frame, filled = fill_gaps(frame, tf)
        for sym, n_filled in filled.items():
            reports[sym].filled_bars = n_filled
    for sym, cnt in _per_symbol(
        frame, n=pl.len(), first=pl.col("timestamp").min(), last=pl.col("timestamp").max()
    ).items():
        r = reports[sym]
        r.rows_valid, r.first, r.last = int(cnt["n"]), cnt["first"], cnt["last"]
    return CleanBars(frame=frame, timeframe=tf, reports=dict(sorted(reports.items())))
