"""CryptoDataDownload CSV exports (Binance, Bitstamp, Coinbase, Gemini, Kraken, ... layouts).

Layout: an optional first line with the source URL, then a header such as
``unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount``; rows
newest first. Handled variations, all measured on real exports:

- ``unix`` in milliseconds (recent rows) or seconds with ``.0`` (older rows);
  ``Unix Timestamp`` on some exchanges; no unix column at all on old exports;
- ``date`` as ``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DD HH-AM/PM``;
- volume columns named after the base and quote assets (``Volume BTC``,
  ``Volume USDT``/``Volume USD``) or a single ``Volume``;
- ``tradecount`` missing, or ``NULL`` in older rows.

``unix`` is the source of truth; rows whose ``date`` disagrees are counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.readers._table import (
    LINE,
    OnMalformed,
    canonical_columns,
    check_bad,
    decimals,
    parse_date_ms,
    parse_number,
    split_lines,
    unix_to_ms,
)
from cappuccino.data.readers.base import RawBars
from cappuccino.data.schema import normalize_symbol

_PRICES = ("open", "high", "low", "close")


def looks_like_cryptodatadownload(path: Path) -> bool:
    """True when the first or second line is a CryptoDataDownload-style header."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        head = [fh.readline().lower() for _ in range(2)]
    return any(("unix" in h or "date" in h) and "symbol" in h and "open" in h for h in head)


def _header_index(path: Path) -> int:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline().strip().lower()
    return 0 if ("open" in first and "," in first) else 1


def _volume_columns(header: list[str], symbol: str, source: str) -> tuple[str, str | None, str]:
    """Return (base volume column, quote volume column or None, canonical symbol)."""
    vols = [h for h in header if h.lower().startswith("volume")]
    if len(vols) == 1:
        return vols[0], None, normalize_symbol(symbol)
    if len(vols) != 2:
        raise DataError(source, line=None, value=header, expected="one or two 'Volume ...' columns")
    assets = {re.sub(r"^volume[\s_]*", "", v, flags=re.I).upper(): v for v in vols}
    sym = normalize_symbol(symbol)
    if "/" in sym:
        base, quote = sym.split("/", 1)
    else:
        starts = [a for a in assets if a and sym.startswith(a)]
        if len(starts) != 1:
            raise DataError(
                source,
                column="symbol",
                value=symbol,
                expected=f"a symbol starting with one of the volume assets {sorted(assets)}",
            )
        base = starts[0]
        quote = sym[len(base) :]
        sym = f"{base}/{quote}"
    if base not in assets:
        raise DataError(source, value=vols, expected=f"a 'Volume {base}' column for symbol {sym}")
    quote_col = next(v for a, v in assets.items() if a != base)
    return assets[base], quote_col, sym


def read_cryptodatadownload(
    path: Path, *, on_malformed: OnMalformed = "error", symbol: str | None = None
) -> RawBars:
    """Read one CryptoDataDownload export into canonical columns (+ ``_line``).

    ``symbol`` overrides the file's symbol column (needed when the export has none).
    """
    path = Path(path)
    source = str(path)
    cells = split_lines(path, header_index=_header_index(path), on_malformed=on_malformed)
    lower = {h.lower(): h for h in cells.header}
    missing = [c for c in _PRICES if c not in lower]
    if missing:
        raise DataError(source, value=cells.header, expected=f"columns {list(_PRICES)}")
    unix_col = lower.get("unix") or lower.get("unix timestamp")
    date_col = lower.get("date")
    if unix_col is None and date_col is None:
        raise DataError(source, value=cells.header, expected="a 'unix' or 'date' column")
    sym_col = lower.get("symbol")
    frame = cells.frame
    if frame.height == 0:
        raise DataError(source, expected="at least one data row", detail="file has only a header")
    file_symbol = symbol or (frame[sym_col][0] if sym_col else None)
    if not file_symbol:
        raise DataError(source, column="symbol", expected="a symbol column or an explicit symbol")
    vol_col, qvol_col, canon = _volume_columns(cells.header, file_symbol, source)
    if sym_col and symbol is None:
        n_sym = frame[sym_col].n_unique()
        if n_sym != 1:
            raise DataError(
                source,
                column="symbol",
                value=frame[sym_col].unique().to_list()[:5],
                expected="one symbol per file",
            )

    raw = {
        "open": lower["open"],
        "high": lower["high"],
        "low": lower["low"],
        "close": lower["close"],
        "volume": vol_col,
    }
    if qvol_col:
        raw["quote_volume"] = qvol_col
    if "tradecount" in lower:
        raw["trades"] = lower["tradecount"]
    if unix_col:
        raw["unix"] = unix_col
    if date_col:
        raw["date"] = date_col
    frame = frame.select(LINE, *(pl.col(src).alias(f"_raw_{name}") for name, src in raw.items()))

    values: list[pl.Expr] = []
    bad: dict[str, pl.Expr] = {}
    expected: dict[str, str] = {}
    for name in raw:
        if name == "date":
            continue
        v, b = parse_number(name, required=name not in ("quote_volume", "trades"))
        values.append(v)
        bad[name] = b
        expected[name] = "a finite number" + (
            "" if name in ("quote_volume", "trades") else " (not empty)"
        )
    if date_col:
        date_ms = parse_date_ms(pl.col("_raw_date"))
        values.append(date_ms.alias("_date_ms"))
        bad["date"] = pl.col("_raw_date").is_not_null() & date_ms.is_null()
        expected["date"] = "YYYY-MM-DD HH:MM:SS or YYYY-MM-DD HH-AM/PM"
    frame = frame.with_columns(b.alias(f"_isbad_{n}") for n, b in bad.items()).with_columns(values)
    frame, skipped = check_bad(
        frame,
        {n: pl.col(f"_isbad_{n}") for n in bad},
        source=source,
        expected=expected,
        on_malformed=on_malformed,
    )
    if unix_col:
        ts_ms = unix_to_ms(pl.col("unix"))
        unix_seconds_rows = int(frame.select((pl.col("unix") < 1e11).sum()).item())
    else:
        ts_ms = pl.col("_date_ms")
        unix_seconds_rows = 0
    frame = frame.with_columns(ts_ms.alias("_ts_ms"))
    mismatch = 0
    if unix_col and date_col:
        mismatch = int(frame.select((pl.col("_date_ms") != pl.col("_ts_ms")).sum()).item())
    out = frame.select(
        canonical_columns(
            symbol=pl.lit(canon),
            has_quote_volume=qvol_col is not None,
            has_trades="trades" in raw,
            volume_decimals=decimals(pl.col("_raw_volume")),
        )
    )
    return RawBars(
        frame=out,
        source=source,
        rows_read=cells.frame.height + cells.malformed_skipped,
        malformed_skipped=cells.malformed_skipped + skipped,
        unix_seconds_rows=unix_seconds_rows,
        date_unix_mismatch=mismatch,
    )
