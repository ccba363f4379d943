"""Canonical OHLCV schema (bar intervals: :class:`~cappuccino.market.timeframe.Timeframe`)."""

from __future__ import annotations

import re

import polars as pl

from cappuccino.market.timeframe import Timeframe as Timeframe  # part of the schema's vocabulary

TIME_DTYPE = pl.Datetime("ms", "UTC")

CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": TIME_DTYPE,
    "symbol": pl.String(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "quote_volume": pl.Float64(),
    "trades": pl.Int64(),
    "filled": pl.Boolean(),
}
CANONICAL_COLUMNS: tuple[str, ...] = tuple(CANONICAL_SCHEMA)
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VALUE_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
)


def ms_to_timestamp(epoch_ms: pl.Expr) -> pl.Expr:
    """Integer epoch milliseconds to the canonical UTC timestamp dtype."""
    return epoch_ms.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").cast(TIME_DTYPE)


def empty_bars() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=CANONICAL_SCHEMA)


def normalize_symbol(symbol: str) -> str:
    """Upper-case a symbol and keep ccxt's ``BASE/QUOTE`` form; ``btc-usdt`` -> ``BTC/USDT``."""
    s = symbol.strip().upper().replace("-", "/").replace("_", "/")
    return s


def normalize_symbol_expr(symbol: pl.Expr) -> pl.Expr:
    """Vectorised :func:`normalize_symbol` for a String column."""
    return symbol.str.strip_chars().str.to_uppercase().str.replace_all(r"[-_]", "/")


def symbol_key(symbol: str) -> str:
    """Separator-free key for matching user input: ``BTC/USDT`` and ``BTCUSDT`` -> ``BTCUSDT``."""
    return re.sub(r"[^A-Z0-9]", "", symbol.upper())


def resolve_symbols(requested: list[str] | None, available: list[str]) -> list[str]:
    """Map user-typed symbols onto stored ones (``btcusdt`` finds ``BTC/USDT``).

    Raises ``ValueError`` naming an unknown symbol and listing what is available.
    """
    if not requested:
        return sorted(available)
    by_key = {symbol_key(s): s for s in available}
    out = []
    for r in requested:
        hit = by_key.get(symbol_key(r))
        if hit is None:
            raise ValueError(f"symbols: got {r!r}, expected one of {sorted(available)}")
        out.append(hit)
    return out


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast the canonical columns in canonical order (missing optional ones as null)."""
    cols = []
    for name, dtype in CANONICAL_SCHEMA.items():
        if name in frame.columns:
            cols.append(pl.col(name).cast(dtype))
        elif name in ("quote_volume", "trades"):
            cols.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == "filled":
            cols.append(pl.lit(False).alias(name))
        else:
            raise ValueError(f"bars: missing required column {name!r}; got {frame.columns}")
    return frame.select(cols)


def sort_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (symbol, timestamp); the frame itself, not a copy, when it already
    is (a sort of 6 M bars would cost a second copy of them)."""
    n = frame.height
    if n < 2:
        return frame
    s, t = frame["symbol"], frame["timestamp"]
    s0, s1, t0, t1 = s.slice(0, n - 1), s.slice(1), t.slice(0, n - 1), t.slice(1)
    if ((s1 > s0) | ((s1 == s0) & (t1 >= t0))).all():
        return frame
    return frame.sort(["symbol", "timestamp"])
