"""Shared parsing: split text lines into string cells and cast them with line-accurate errors.

Everything is vectorised with polars; the only Python-level work is splitting the
file into lines. Every row keeps its 1-based source line in ``_line`` so an error
can say ``file.csv:123``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.schema import ms_to_timestamp

OnMalformed = Literal["error", "skip"]
NULL_TOKENS = ("", "NULL", "null", "None", "NA", "N/A", "nan", "NaN", "NAN")
LINE = "_line"
VOLUME_DECIMALS = "_volume_decimals"


@dataclass
class Cells:
    """String cells of a delimited file: ``frame`` has one String column per header name + ``_line``."""

    header: list[str]
    frame: pl.DataFrame
    malformed_skipped: int


def split_lines(
    path: Path, *, header_index: int, sep: str = ",", on_malformed: OnMalformed = "error"
) -> Cells:
    """Tokenise ``path``: line ``header_index`` (0-based) is the header, later lines are rows.

    Blank lines are ignored. A row whose field count differs from the header's is an
    error naming file and line, or with ``on_malformed="skip"`` is dropped and counted.
    Quoted fields with embedded separators are not supported and show up as a wrong
    field count.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), value=f"byte {exc.start}", expected="UTF-8 text") from exc
    lines = text.splitlines()
    if len(lines) <= header_index:
        raise DataError(
            str(path), expected=f"a header on line {header_index + 1}", detail="file too short"
        )
    header = [h.strip().strip('"').strip() for h in lines[header_index].split(sep)]
    body = pl.DataFrame({"raw": lines[header_index + 1 :]}, schema={"raw": pl.String})
    body = body.with_row_index(LINE, offset=header_index + 2).with_columns(
        pl.col(LINE).cast(pl.Int64)
    )
    body = body.filter(pl.col("raw").str.strip_chars() != "")
    n_fields = pl.col("raw").str.count_matches(sep, literal=True) + 1
    bad = body.filter(n_fields != len(header))
    skipped = 0
    if bad.height:
        if on_malformed == "error":
            raw = bad["raw"][0]
            raise DataError(
                str(path),
                line=int(bad[LINE][0]),
                value=raw if len(raw) <= 120 else raw[:117] + "...",
                expected=f"{len(header)} fields like the header {header}",
                detail=f"found {raw.count(sep) + 1} ({bad.height} such rows in the file)",
            )
        skipped = bad.height
        body = body.filter(n_fields == len(header))
    cells = body.select(
        LINE, pl.col("raw").str.split_exact(sep, len(header) - 1).struct.rename_fields(header)
    ).unnest("raw")
    cells = cells.with_columns(pl.col(h).str.strip_chars().str.strip_chars('"') for h in header)
    return Cells(header=header, frame=cells, malformed_skipped=skipped)


def check_bad(
    frame: pl.DataFrame,
    bad: dict[str, pl.Expr],
    *,
    source: str,
    expected: dict[str, str],
    on_malformed: OnMalformed,
) -> tuple[pl.DataFrame, int]:
    """Raise on (or drop and count) rows where any ``bad[column]`` mask is true.

    ``frame`` must still hold the raw string column of each checked name under
    ``_raw_<name>`` so the error can show the offending text.
    """
    if not bad:
        return frame, 0
    flags = frame.select(LINE, *(e.fill_null(False).alias(f"_bad_{c}") for c, e in bad.items()))
    any_bad = pl.any_horizontal(pl.col(f"_bad_{c}") for c in bad)
    hits = flags.filter(any_bad)
    if hits.height == 0:
        return frame, 0
    if on_malformed == "error":
        first = hits.row(0, named=True)
        col = next(c for c in bad if first[f"_bad_{c}"])
        line = int(first[LINE])
        raw = frame.filter(pl.col(LINE) == line)[f"_raw_{col}"][0]
        raise DataError(
            source,
            line=line,
            column=col,
            value=raw,
            expected=expected[col],
            detail=f"{hits.height} malformed rows in the file" if hits.height > 1 else "",
        )
    keep = flags.select(~any_bad).to_series()
    return frame.filter(keep), hits.height


def parse_number(name: str, *, required: bool) -> tuple[pl.Expr, pl.Expr]:
    """(value, bad-mask) expressions for the raw String column ``_raw_<name>``.

    Null tokens (``NULL``, empty, ...) give null; they are bad when ``required``.
    Non-numeric text, NaN and infinities are bad.
    """
    raw = pl.col(f"_raw_{name}")
    is_null = raw.is_null() | raw.is_in(list(NULL_TOKENS))
    value = pl.when(is_null).then(None).otherwise(raw.cast(pl.Float64, strict=False))
    bad = (~is_null & (value.is_null() | value.is_nan() | value.is_infinite())) | (
        is_null if required else pl.lit(False)
    )
    return value.alias(name), bad


def decimals(raw: pl.Expr) -> pl.Expr:
    """Number of digits after the decimal point in a numeric string (0 when there is none)."""
    pos = raw.str.find(".", literal=True)
    return pl.when(pos.is_null()).then(0).otherwise(raw.str.len_chars() - pos - 1).cast(pl.Int32)


DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d",
)


def parse_date_ms(raw: pl.Expr) -> pl.Expr:
    """Parse date text in any of :data:`DATE_FORMATS` (as UTC) to epoch milliseconds, else null.

    CryptoDataDownload's hour-only ``2017-08-17 06-AM`` is rewritten to ``06:00 AM`` first.
    """
    text = raw.str.replace(r"^(\d{4}-\d{2}-\d{2}) (\d{1,2})-([AaPp][Mm])$", "${1} ${2}:00 ${3}")
    tries = [
        text.str.strptime(pl.Datetime("ms"), f, strict=False, exact=True) for f in DATE_FORMATS
    ]
    return pl.coalesce(tries).dt.epoch("ms")


def canonical_columns(
    *, symbol: pl.Expr, has_quote_volume: bool, has_trades: bool, volume_decimals: pl.Expr
) -> list[pl.Expr]:
    """Select parsed columns (``_ts_ms``, prices, ``volume``, optional ``quote_volume`` and
    ``trades``, ``_line``) as the canonical bar columns plus ``_line`` and ``_volume_decimals``."""
    return [
        ms_to_timestamp(pl.col("_ts_ms")).alias("timestamp"),
        symbol.alias("symbol"),
        *(pl.col(c) for c in ("open", "high", "low", "close", "volume")),
        (pl.col("quote_volume") if has_quote_volume else pl.lit(None, dtype=pl.Float64)).alias(
            "quote_volume"
        ),
        (
            pl.col("trades").round(0).cast(pl.Int64) if has_trades else pl.lit(None, dtype=pl.Int64)
        ).alias("trades"),
        pl.lit(False).alias("filled"),
        pl.col(LINE),
        volume_decimals.cast(pl.Int32).alias(VOLUME_DECIMALS),
    ]


def unix_to_ms(x: pl.Expr) -> pl.Expr:
    """Epoch seconds or milliseconds (decided per value: >= 1e11 means ms) to integer ms."""
    return pl.when(x >= 1e11).then(x).otherwise(x * 1000.0).round(0).cast(pl.Int64)
