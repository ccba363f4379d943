"""Generic delimited files with an explicit column mapping and timestamp unit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.readers._table import (
    LINE,
    OnMalformed,
    canonical_columns,
    check_bad,
    decimals,
    parse_number,
    split_lines,
)
from cappuccino.data.readers.base import RawBars
from cappuccino.data.schema import normalize_symbol, normalize_symbol_expr

TimestampUnit = Literal["s", "ms", "us", "ns", "iso"]
_UNIT_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
OPTIONAL = ("symbol", "quote_volume", "trades")


def read_generic_csv(
    path: Path,
    *,
    columns: dict[str, str] | None = None,
    timestamp_unit: TimestampUnit = "ms",
    symbol: str | None = None,
    sep: str = ",",
    on_malformed: OnMalformed = "error",
) -> RawBars:
    """Read a delimited file whose header names the columns.

    ``columns`` maps canonical names (``timestamp, symbol, open, high, low, close,
    volume, quote_volume, trades``) to the file's header names; unmapped canonical
    names are looked up as-is (case-insensitive). ``timestamp_unit`` is the unit of
    a numeric epoch (``s``, ``ms``, ``us``, ``ns``) or ``iso`` for ISO-8601 text
    (naive times are taken as UTC). ``symbol`` is required when the file has no
    symbol column.
    """
    path = Path(path)
    source = str(path)
    if timestamp_unit not in (*_UNIT_TO_MS, "iso"):
        raise ValueError(f"timestamp_unit: got {timestamp_unit!r}, expected s, ms, us, ns or iso")
    cells = split_lines(path, header_index=0, sep=sep, on_malformed=on_malformed)
    lower = {h.lower(): h for h in cells.header}
    mapping = {k: v for k, v in (columns or {}).items()}
    unknown = set(mapping) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise ValueError(
            f"columns: unknown canonical names {sorted(unknown)}; "
            f"expected some of {[*REQUIRED, *OPTIONAL]}"
        )
    resolved: dict[str, str] = {}
    for name in (*REQUIRED, *OPTIONAL):
        src = mapping.get(name, name)
        hit = src if src in cells.header else lower.get(src.lower())
        if hit is None:
            if name in REQUIRED:
                raise DataError(
                    source,
                    line=1,
                    value=cells.header,
                    expected=f"a column for {name!r} (mapped name {src!r})",
                )
            continue
        resolved[name] = hit
    if "symbol" not in resolved and symbol is None:
        raise ValueError(f"{source}: no symbol column; pass symbol=")
    frame = cells.frame.select(LINE, *(pl.col(s).alias(f"_raw_{n}") for n, s in resolved.items()))
    values: list[pl.Expr] = []
    bad: dict[str, pl.Expr] = {}
    expected: dict[str, str] = {}
    for name in ("open", "high", "low", "close", "volume", "quote_volume", "trades"):
        if name in resolved:
            v, b = parse_number(name, required=name in REQUIRED)
            values.append(v)
            bad[name] = b
            expected[name] = "a finite number"
    raw_ts = pl.col("_raw_timestamp")
    if timestamp_unit == "iso":
        ts = raw_ts.str.to_datetime(time_unit="ms", strict=False)
        ts_ms = ts.dt.epoch("ms")
        expected["timestamp"] = "an ISO-8601 date-time"
    else:
        num = raw_ts.cast(pl.Float64, strict=False)
        ts_ms = (num * _UNIT_TO_MS[timestamp_unit]).round(0).cast(pl.Int64)
        expected["timestamp"] = f"epoch {timestamp_unit} as a number"
    values.append(ts_ms.alias("_ts_ms"))
    bad["timestamp"] = ts_ms.is_null()
    frame = frame.with_columns(b.alias(f"_isbad_{n}") for n, b in bad.items()).with_columns(values)
    frame, skipped = check_bad(
        frame,
        {n: pl.col(f"_isbad_{n}") for n in bad},
        source=source,
        expected=expected,
        on_malformed=on_malformed,
    )
    sym = (
        normalize_symbol_expr(pl.col("_raw_symbol"))
        if "symbol" in resolved and symbol is None
        else pl.lit(normalize_symbol(symbol or ""))
    )
    out = frame.select(
        canonical_columns(
            symbol=sym,
            has_quote_volume="quote_volume" in resolved,
            has_trades="trades" in resolved,
            volume_decimals=decimals(pl.col("_raw_volume")),
        )
    )
    return RawBars(
        frame=out,
        source=source,
        rows_read=cells.frame.height + cells.malformed_skipped,
        malformed_skipped=cells.malformed_skipped + skipped,
    )
