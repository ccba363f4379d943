"""Parquet files holding bars (canonical column names, or mapped)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.readers._table import LINE, VOLUME_DECIMALS
from cappuccino.data.readers.base import RawBars
from cappuccino.data.schema import (
    CANONICAL_SCHEMA,
    TIME_DTYPE,
    conform,
    ms_to_timestamp,
    normalize_symbol_expr,
)

# A float read from Parquet carries its full binary precision.
_FULL_PRECISION_DECIMALS = 15


def read_parquet_bars(
    path: Path, *, columns: dict[str, str] | None = None, symbol: str | None = None
) -> RawBars:
    """Read bars from Parquet. ``timestamp`` may be a datetime or integer epoch milliseconds.

    Row numbers (1-based) stand in for line numbers in error messages.
    """
    path = Path(path)
    source = str(path)
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise DataError(source, expected="a readable Parquet file", detail=str(exc)) from exc
    rename = {src: dst for dst, src in (columns or {}).items()}
    frame = frame.rename(rename)
    if "symbol" not in frame.columns:
        if symbol is None:
            raise DataError(source, value=frame.columns, expected="a 'symbol' column or symbol=")
        frame = frame.with_columns(pl.lit(symbol).alias("symbol"))
    ts = frame.schema.get("timestamp")
    if ts is None:
        raise DataError(source, value=frame.columns, expected="a 'timestamp' column")
    if ts.is_integer():
        frame = frame.with_columns(ms_to_timestamp(pl.col("timestamp")))
    elif isinstance(ts, pl.Datetime):
        if ts.time_zone is None:
            frame = frame.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
        frame = frame.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC").cast(TIME_DTYPE))
    else:
        raise DataError(
            source, column="timestamp", value=str(ts), expected="datetime or integer epoch ms"
        )
    frame = frame.with_columns(normalize_symbol_expr(pl.col("symbol")).alias("symbol"))
    frame = conform(
        frame.with_columns(
            pl.col(c).cast(pl.Float64)
            for c in ("open", "high", "low", "close", "volume")
            if c in frame.columns
        )
    )
    for col in ("timestamp", "open", "high", "low", "close", "volume"):
        bad = frame[col].is_null()
        if col != "timestamp":
            bad = bad | frame[col].is_nan() | frame[col].is_infinite()
        if bad.any():
            row = int(bad.arg_true()[0]) + 1
            raise DataError(
                source,
                line=row,
                column=col,
                value=frame[col][row - 1],
                expected="a finite, non-null value",
                detail="line = row number",
            )
    out = (
        frame.with_row_index(LINE, offset=1)
        .with_columns(
            pl.col(LINE).cast(pl.Int64),
            pl.lit(_FULL_PRECISION_DECIMALS, dtype=pl.Int32).alias(VOLUME_DECIMALS),
        )
        .select(*CANONICAL_SCHEMA, LINE, VOLUME_DECIMALS)
    )
    return RawBars(frame=out, source=source, rows_read=out.height)
