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
- **Impossible bars** (checked first, on every input row): a price <= 0, high below
  low, high below open or close, low above them, negative volume, a timestamp before
  ``not_before`` (default 2009-01-01, before any crypto market) or more than one bar
  after ``now``. Policy ``error`` (default: the first one, named by file:line and value)
  or ``drop`` (each reason counted).
- **Interval**: the bar interval of each symbol is the most common step between its
  consecutive bars. It must equal the one given (``--timeframe``), be the same for every
  symbol, and every step must be a whole multiple of it. A run of
  :data:`MIXED_RUN` or more consecutive steps of the same multiple (daily rows in an
  hourly file) is a second interval. Interval policy ``error`` (default) or ``keep``
  (counted, and the steps are treated as gaps).
- **Gaps**: counted (gaps, missing bars, longest); policy ``keep`` (default),
  ``fill`` (carry the close forward as open=high=low=close, zero volume and
  trades, ``filled=True``) or ``error``. Fill is bounded: a gap longer than
  ``max_fill_bars`` (default 24) stays a gap and is counted as unfilled.
- **Zero volume** bars are legal and counted (no trade in that hour).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.readers._table import LINE, VOLUME_DECIMALS
from cappuccino.data.readers.base import RawBars
from cappuccino.data.schema import CANONICAL_COLUMNS, VALUE_COLUMNS, Timeframe, sort_bars

GapPolicy = Literal["fill", "keep", "error"]
OhlcPolicy = Literal["error", "drop"]
IntervalPolicy = Literal["error", "keep"]
GAP_POLICIES: tuple[str, ...] = ("fill", "keep", "error")
OHLC_POLICIES: tuple[str, ...] = ("error", "drop")
INTERVAL_POLICIES: tuple[str, ...] = ("error", "keep")
NOT_BEFORE = datetime(2009, 1, 1, tzinfo=UTC)
MAX_FILL_BARS = 24
MIXED_RUN = 3  # consecutive equal multi-bar steps that make a second interval, not gaps
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
    unfilled_gaps: int = 0
    unfilled_bars: int = 0
    interval_mismatch_steps: int = 0
    nonpositive_prices: int = 0
    high_below_low: int = 0
    high_below_open_close: int = 0
    low_above_open_close: int = 0
    negative_volume: int = 0
    timestamp_before_earliest: int = 0
    timestamp_in_future: int = 0
    impossible_dropped: int = 0
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


def _steps_ms(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("timestamp").diff().over("symbol").dt.total_milliseconds()


def symbol_intervals(frame: pl.DataFrame) -> dict[str, int]:
    """Per symbol, the most common positive step in ms between consecutive bars (frame sorted
    by symbol then time; ties go to the shorter step). Symbols with one bar are absent."""
    steps = frame.select("symbol", _steps_ms(frame).alias("d")).filter(pl.col("d") > 0)
    modes = (
        steps.group_by("symbol", "d")
        .len()
        .sort(["symbol", "len", "d"], descending=[False, True, False])
        .unique("symbol", keep="first", maintain_order=True)
    )
    return {str(r["symbol"]): int(r["d"]) for r in modes.iter_rows(named=True)}


def infer_timeframe(frame: pl.DataFrame) -> Timeframe:
    """Most common positive step between consecutive bars of each symbol (frame sorted)."""
    steps = frame.select(_steps_ms(frame).alias("d")).filter(pl.col("d") > 0)
    if steps.height == 0:
        raise DataError("bars", expected="at least two bars per symbol to infer the interval")
    mode = steps.group_by("d").len().sort(["len", "d"], descending=[True, False])["d"][0]
    return Timeframe(int(mode))


def fill_gaps(
    frame: pl.DataFrame, timeframe: Timeframe, max_fill_bars: int | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Insert the missing bars of each symbol between its first and last bar.

    A filled bar has open=high=low=close equal to the previous close, zero volume,
    quote volume and trades, and ``filled=True``. A gap of more than ``max_fill_bars``
    missing bars (None: no bound) is left as it is. Returns the frame (canonical
    columns, sorted) and the number of bars inserted per symbol.
    """
    if frame.height == 0:
        return frame, {}
    every = f"{timeframe.ms}ms"
    frame = sort_bars(frame)
    steps = _steps_ms(frame)
    if frame.select((steps.is_null() | (steps == timeframe.ms)).all()).item():
        # no gap anywhere: the calendar would be the bars themselves (no copy made)
        return frame, dict.fromkeys(frame["symbol"].unique(maintain_order=True).to_list(), 0)
    if max_fill_bars is None:
        segment = pl.lit(0, dtype=pl.Int64)
    else:
        too_long = (_steps_ms(frame) // timeframe.ms - 1) > max_fill_bars
        segment = too_long.fill_null(False).cast(pl.Int64).cum_sum().over("symbol")
    keyed = frame.with_columns(segment.alias("_seg"))
    calendar = (
        keyed.group_by("symbol", "_seg")
        .agg(
            pl.datetime_ranges(pl.col("timestamp").min(), pl.col("timestamp").max(), every).alias(
                "timestamp"
            )
        )
        .explode("timestamp")
        .drop("_seg")
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


def _raise_at(row: dict[str, Any], sources: list[str], **kwargs: Any) -> NoReturn:
    raise DataError(sources[row["_src"]], line=row[LINE], **kwargs)


def _check_interval(
    frame: pl.DataFrame,
    timeframe: Timeframe,
    sources: list[str],
    policy: IntervalPolicy,
    reports: dict[str, SymbolReport],
) -> None:
    """Every step a whole multiple of ``timeframe``; no second interval (module docstring)."""
    step = _steps_ms(frame)
    off = frame.with_columns(step.alias("_step")).filter(
        pl.col("_step").is_not_null() & (pl.col("_step") % timeframe.ms != 0)
    )
    if off.height:
        _raise_at(
            off.row(0, named=True),
            sources,
            column="timestamp",
            value=str(off["timestamp"][0]),
            expected=f"bars on a {timeframe} grid",
            detail=f"step {off['_step'][0]} ms from the previous bar; {off.height} off-grid bars",
        )
    k = (step // timeframe.ms).fill_null(1)
    run_id = (k != k.shift(1)).fill_null(True).cast(pl.Int64).cum_sum().over("symbol")
    runs = frame.with_columns(k.alias("_k"), run_id.alias("_run"))
    runs = runs.with_columns(pl.len().over("symbol", "_run").alias("_runlen"))
    mixed = runs.filter((pl.col("_k") >= 2) & (pl.col("_runlen") >= MIXED_RUN))
    for sym, c in _per_symbol(mixed, n=pl.len()).items():
        reports[sym].interval_mismatch_steps = int(c["n"])
    if mixed.height and policy == "error":
        row = mixed.row(0, named=True)
        _raise_at(
            row,
            sources,
            column="timestamp",
            value=str(row["timestamp"]),
            expected=f"one {timeframe} interval",
            detail=f"{row['_runlen']} consecutive steps of {Timeframe(row['_k'] * timeframe.ms)} "
            f"(a second interval in the file; {mixed.height} such steps in all; "
            "--on-interval-mismatch keep treats them as gaps)",
        )


def _resolve_timeframe(
    frame: pl.DataFrame,
    timeframe: Timeframe | None,
    sources: list[str],
    policy: IntervalPolicy,
    fallback: Timeframe,
) -> Timeframe:
    """The given interval, checked against every symbol's own; or the one they share
    (``fallback``, inferred before impossible bars were dropped, when too few are left)."""
    modes = symbol_intervals(frame)
    if not modes or policy == "keep":
        return timeframe or fallback
    where = {s: sources[i] for s, i in frame.group_by("symbol").agg(pl.col("_src").min()).rows()}
    if timeframe is not None:
        for sym, ms in sorted(modes.items()):
            if ms != timeframe.ms:
                raise DataError(
                    where[sym],
                    column="timestamp",
                    value=f"{sym} steps of {Timeframe(ms)}",
                    expected=f"{timeframe} bars (--timeframe {timeframe})",
                    detail="--on-interval-mismatch keep imports it anyway",
                )
        return timeframe
    if len(set(modes.values())) > 1:
        found = ", ".join(f"{s} {Timeframe(ms)} ({where[s]})" for s, ms in sorted(modes.items()))
        raise DataError(
            "bars",
            value=found,
            expected="one interval for every symbol of an import (import each interval apart)",
        )
    return Timeframe(next(iter(modes.values())))


def _impossible(not_before: datetime, not_after: datetime) -> dict[str, pl.Expr]:
    """Reason (a SymbolReport field) -> the rows it flags."""
    o, h, lo, cl, v = (pl.col(x) for x in ("open", "high", "low", "close", "volume"))
    ts = pl.col("timestamp")
    return {
        "nonpositive_prices": pl.min_horizontal(o, h, lo, cl) <= 0,
        "high_below_low": h < lo,
        "high_below_open_close": h < pl.max_horizontal(o, cl),
        "low_above_open_close": lo > pl.min_horizontal(o, cl),
        "negative_volume": v < 0,
        "timestamp_before_earliest": ts < not_before,
        "timestamp_in_future": ts > not_after,
    }


def _impossible_rows(
    frame: pl.DataFrame,
    sources: list[str],
    reports: dict[str, SymbolReport],
    policy: OhlcPolicy,
    not_before: datetime,
    not_after: datetime,
) -> pl.DataFrame:
    """Count the impossible rows of ``frame``; raise on the first (``error``) or drop them."""
    checks = _impossible(not_before, not_after)
    flagged = frame.with_columns(
        *(e.fill_null(False).alias(f"_{k}") for k, e in checks.items())
    ).with_columns(pl.any_horizontal(*(f"_{k}" for k in checks)).alias("_impossible"))
    bad = flagged.filter(pl.col("_impossible"))
    if bad.height == 0:
        return frame
    for sym, c in _per_symbol(bad, **{k: pl.col(f"_{k}").sum() for k in checks}).items():
        for k in checks:
            setattr(reports[sym], k, int(c[k]))
    if policy == "error":
        first = bad.sort(ORDER).row(0, named=True)
        reason = next(k for k in checks if first[f"_{k}"])
        expected = {
            "nonpositive_prices": "prices > 0",
            "high_below_low": "low <= high",
            "high_below_open_close": "high >= open and close",
            "low_above_open_close": "low <= open and close",
            "negative_volume": "volume >= 0",
            "timestamp_before_earliest": f"a timestamp on or after {not_before.date()}",
            "timestamp_in_future": f"a timestamp no later than {not_after.isoformat()} "
            "(one bar from now)",
        }[reason]
        fields = ("timestamp", "open", "high", "low", "close", "volume")
        _raise_at(
            first,
            sources,
            value={f: str(first[f]) if f == "timestamp" else first[f] for f in fields},
            expected=expected,
            detail=f"{bad.height} impossible bars; --on-bad-ohlc drop drops and counts them",
        )
    for sym, c in _per_symbol(bad, n=pl.len()).items():
        reports[sym].impossible_dropped = int(c["n"])
    return frame.filter(~flagged["_impossible"])


def check_policies(
    on_gap: str, on_bad_ohlc: str, on_interval_mismatch: str, max_fill_bars: int
) -> None:
    """The validation policies, or a ValueError naming the one that is not known."""
    for name, value, allowed in (
        ("on_gap", on_gap, GAP_POLICIES),
        ("on_bad_ohlc", on_bad_ohlc, OHLC_POLICIES),
        ("on_interval_mismatch", on_interval_mismatch, INTERVAL_POLICIES),
    ):
        if value not in allowed:
            raise ValueError(f"{name}: got {value!r}, expected one of {', '.join(allowed)}")
    if max_fill_bars < 0:
        raise ValueError(f"max_fill_bars: got {max_fill_bars}, expected a count >= 0")


def clean_bars(
    raws: list[RawBars],
    *,
    timeframe: Timeframe | None = None,
    on_gap: GapPolicy = "keep",
    on_bad_ohlc: OhlcPolicy = "error",
    on_interval_mismatch: IntervalPolicy = "error",
    max_fill_bars: int = MAX_FILL_BARS,
    not_before: datetime = NOT_BEFORE,
    now: datetime | None = None,
) -> CleanBars:
    """Validate and repair bars from one or more sources; see the module docstring for the rules.

    ``now`` (default: the wall clock) bounds timestamps from above, one bar ahead.
    """
    check_policies(on_gap, on_bad_ohlc, on_interval_mismatch, max_fill_bars)
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
    d = _steps_ms(in_order)
    for sym, c in _per_symbol(in_order, down=(d < 0).sum(), up=(d > 0).sum()).items():
        down, up = int(c["down"]), int(c["up"])
        r = reports[sym]
        r.input_order = "ascending" if down == 0 else "descending" if up == 0 else "unsorted"
        r.out_of_order_steps = 0 if r.input_order != "unsorted" else min(up, down)

    # The interval bounds "the future" (one bar ahead); its mode is robust to a few bad rows.
    frame = frame.sort([*GROUP, ORDER])
    tf_bound = timeframe or infer_timeframe(frame)
    wall = now or datetime.now(UTC)
    not_after = datetime.fromtimestamp(wall.timestamp() + tf_bound.ms / 1000, UTC)
    frame = _impossible_rows(frame, sources, reports, on_bad_ohlc, not_before, not_after)

    frame = _dedupe(frame, reports).sort(GROUP)
    tf = _resolve_timeframe(frame, timeframe, sources, on_interval_mismatch, tf_bound)
    _check_interval(frame, tf, sources, on_interval_mismatch, reports)

    step = _steps_ms(frame) // tf.ms - 1
    gaps = frame.with_columns(step.alias("_missing")).filter(pl.col("_missing") > 0)
    for sym, c in _per_symbol(
        gaps,
        n=pl.len(),
        missing=pl.col("_missing").sum(),
        longest=pl.col("_missing").max(),
        long_n=(pl.col("_missing") > max_fill_bars).sum(),
        long_bars=pl.when(pl.col("_missing") > max_fill_bars).then(pl.col("_missing")).sum(),
    ).items():
        r = reports[sym]
        r.gaps, r.missing_bars, r.longest_gap_bars = (
            int(c["n"]),
            int(c["missing"]),
            int(c["longest"]),
        )
        if on_gap == "fill":
            r.unfilled_gaps, r.unfilled_bars = int(c["long_n"]), int(c["long_bars"] or 0)
    if on_gap == "error" and gaps.height:
        row = gaps.row(0, named=True)
        _raise_at(
            row,
            sources,
            column="timestamp",
            value=str(row["timestamp"]),
            expected="no gaps (on_gap='error')",
            detail=f"{row['_missing']} missing bars before this one; {gaps.height} gaps in all",
        )
    frame = frame.with_columns((pl.col("volume") == 0).alias("_zero"))
    for sym, cnt in _per_symbol(frame, zero=pl.col("_zero").sum()).items():
        reports[sym].zero_volume_bars = int(cnt["zero"])

    frame = frame.select(CANONICAL_COLUMNS)
    if on_gap == "fill":
        frame, filled = fill_gaps(frame, tf, max_fill_bars)
        for sym, n_filled in filled.items():
            reports[sym].filled_bars = n_filled
    for sym, cnt in _per_symbol(
        frame, n=pl.len(), first=pl.col("timestamp").min(), last=pl.col("timestamp").max()
    ).items():
        r = reports[sym]
        r.rows_valid, r.first, r.last = int(cnt["n"]), cnt["first"], cnt["last"]
    return CleanBars(frame=frame, timeframe=tf, reports=dict(sorted(reports.items())))
