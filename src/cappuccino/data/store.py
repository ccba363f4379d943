"""Partitioned Parquet bar store with idempotent upserts and atomic writes.

Layout: ``<root>/timeframe=<tf>/symbol=<BASE-QUOTE>/bars.parquet``, one file per
(symbol, timeframe), canonical columns sorted by time.

Upsert rules for a timestamp present in both the store and the incoming bars:
equal rows change nothing; a stored gap-fill placeholder is replaced by a real
bar (and never the reverse); between two real bars that differ, the one with the
larger volume wins (the completed candle, as in :mod:`cappuccino.data.validate`),
ties keep what is stored. A partition is rewritten only when something changed,
so re-importing a file leaves the store byte-for-byte identical.

Concurrency: a writer takes an exclusive lock per partition (``flock`` on
``<partition>/.lock``) for the whole read-merge-write, so two imports into one store never
lose each other's rows; imports of different partitions run side by side. Readers take no
lock: a partition is replaced by an atomic rename, so they see the old file or the new.
Temporary files of a writer killed mid-write are removed (and counted) by the next write
of that partition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.data.schema import (
    CANONICAL_COLUMNS,
    CANONICAL_SCHEMA,
    VALUE_COLUMNS,
    Timeframe,
    empty_bars,
    resolve_symbols,
)
from cappuccino.utils.io import (
    atomic_write_json,
    atomic_write_parquet,
    exclusive_lock,
    remove_orphan_temps,
)

STORE_FORMAT = 1
_MARKER = "cappuccino-store.json"


@dataclass
class UpsertResult:
    """What one upsert did to one partition (counts are bars)."""

    symbol: str
    timeframe: str
    rows_new: int
    rows_updated: int
    rows_conflicting_kept: int
    rows_stored: int
    written: bool
    orphan_temps_removed: int = 0


@dataclass
class PartitionInfo:
    """Summary of one stored (symbol, timeframe) partition."""

    symbol: str
    timeframe: str
    rows: int
    filled: int
    first: datetime | None
    last: datetime | None
    path: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first"] = self.first.isoformat() if self.first else None
        d["last"] = self.last.isoformat() if self.last else None
        return d


class ParquetStore:
    """Bars on disk, one Parquet file per (symbol, timeframe)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        marker = self.root / _MARKER
        if marker.exists():
            fmt = json.loads(marker.read_text()).get("format")
            if fmt != STORE_FORMAT:
                raise ValueError(f"{marker}: store format {fmt!r}, expected {STORE_FORMAT}")

    def _ensure_marker(self) -> None:
        marker = self.root / _MARKER
        if not marker.exists():
            atomic_write_json(marker, {"format": STORE_FORMAT})

    def path(self, symbol: str, timeframe: Timeframe) -> Path:
        return (
            self.root
            / f"timeframe={timeframe.label}"
            / f"symbol={symbol.replace('/', '-')}"
            / "bars.parquet"
        )

    def timeframes(self) -> list[Timeframe]:
        return sorted(
            Timeframe.parse(p.name.split("=", 1)[1]) for p in self.root.glob("timeframe=*")
        )

    def symbols(self, timeframe: Timeframe) -> list[str]:
        base = self.root / f"timeframe={timeframe.label}"
        return sorted(
            p.parent.name.split("=", 1)[1].replace("-", "/", 1)
            for p in base.glob("symbol=*/bars.parquet")
        )

    def read_symbol(self, symbol: str, timeframe: Timeframe) -> pl.DataFrame:
        p = self.path(symbol, timeframe)
        return pl.read_parquet(p).select(CANONICAL_COLUMNS) if p.exists() else empty_bars()

    def read(
        self,
        timeframe: Timeframe,
        symbols: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.DataFrame:
        """Bars of ``symbols`` (all when None) in ``[start, end]``, sorted by symbol then time."""
        syms = symbols if symbols is not None else self.symbols(timeframe)
        missing = [s for s in syms if not self.path(s, timeframe).exists()]
        if missing:
            raise ValueError(
                f"symbols: {missing} not in store {self.root} for timeframe {timeframe}; "
                f"stored: {self.symbols(timeframe)}"
            )
        if not syms:
            return empty_bars()
        lf = pl.scan_parquet([self.path(s, timeframe) for s in syms]).select(CANONICAL_COLUMNS)
        if start is not None:
            lf = lf.filter(pl.col("timestamp") >= start)
        if end is not None:
            lf = lf.filter(pl.col("timestamp") <= end)
        return lf.collect().sort(["symbol", "timestamp"])

    def read_universe(self, timeframe: Timeframe, symbols: list[str] | None) -> pl.DataFrame:
        """Bars of ``symbols`` (normalised; None: every stored symbol); a clear error when the
        store holds no bars of ``timeframe`` or a symbol is missing."""
        chosen = resolve_symbols(symbols, self.symbols(timeframe))
        if not chosen:
            raise ValueError(f"store {self.root} has no {timeframe} bars; import some first")
        return self.read(timeframe, chosen)

    def last_timestamp(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        """Time of the last real (not gap-filled) bar stored for ``symbol``."""
        p = self.path(symbol, timeframe)
        if not p.exists():
            return None
        out = (
            pl.scan_parquet(p).filter(~pl.col("filled")).select(pl.col("timestamp").max()).collect()
        )
        value: datetime | None = out.item()
        return value

    def upsert(self, frame: pl.DataFrame, timeframe: Timeframe) -> list[UpsertResult]:
        """Merge validated canonical bars into the store; see the module docstring for the rules."""
        results = []
        for symbol in sorted(frame["symbol"].unique().to_list()):
            part = frame.filter(pl.col("symbol") == symbol).select(CANONICAL_COLUMNS)
            results.append(self._upsert_one(symbol, part, timeframe))
        return results

    def _upsert_one(
        self, symbol: str, incoming: pl.DataFrame, timeframe: Timeframe
    ) -> UpsertResult:
        target = self.path(symbol, timeframe)
        with exclusive_lock(target.parent / ".lock"):
            orphans = remove_orphan_temps(target)
            return replace(self._merge_write(symbol, incoming, timeframe),
                           orphan_temps_removed=orphans)  # fmt: skip

    def _merge_write(
        self, symbol: str, incoming: pl.DataFrame, timeframe: Timeframe
    ) -> UpsertResult:
        """Read, merge and write one partition (the caller holds its lock)."""
        stored = self.read_symbol(symbol, timeframe)
        if incoming["timestamp"].is_duplicated().any():
            raise ValueError(
                f"upsert {symbol}: incoming bars have duplicate timestamps; validate first"
            )
        j = stored.join(incoming, on="timestamp", how="full", suffix="_in", coalesce=True)
        has_old = pl.col("symbol").is_not_null()
        has_new = pl.col("symbol_in").is_not_null()
        same = pl.all_horizontal(
            pl.col(c).eq_missing(pl.col(f"{c}_in")) for c in (*VALUE_COLUMNS, "filled")
        )
        take_new = has_new & (
            ~has_old
            | (~same & pl.col("filled") & ~pl.col("filled_in"))
            | (
                ~same
                & ~pl.col("filled")
                & ~pl.col("filled_in")
                & (pl.col("volume_in") > pl.col("volume"))
            )
        )
        conflict_kept = has_old & has_new & ~same & ~take_new
        j = j.with_columns(
            take_new.alias("_take"), conflict_kept.alias("_kept"), has_old.alias("_old")
        )
        counts = j.select(
            (pl.col("_take") & ~pl.col("_old")).sum().alias("new"),
            (pl.col("_take") & pl.col("_old")).sum().alias("updated"),
            pl.col("_kept").sum().alias("kept"),
        ).row(0, named=True)
        merged = (
            j.select(
                pl.col("timestamp"),
                *(
                    pl.when(pl.col("_take")).then(pl.col(f"{c}_in")).otherwise(pl.col(c)).alias(c)
                    for c in CANONICAL_COLUMNS
                    if c != "timestamp"
                ),
            )
            .select(CANONICAL_COLUMNS)
            .cast(dict(CANONICAL_SCHEMA))  # type: ignore[arg-type]
            .sort("timestamp")
        )
        written = bool(counts["new"] or counts["updated"])
        if written:
            self._ensure_marker()
            atomic_write_parquet(self.path(symbol, timeframe), merged)
        return UpsertResult(
            symbol=symbol,
            timeframe=timeframe.label,
            rows_new=int(counts["new"]),
            rows_updated=int(counts["updated"]),
            rows_conflicting_kept=int(counts["kept"]),
            rows_stored=merged.height,
            written=written,
        )

    def info(self) -> list[PartitionInfo]:
        out = []
        for tf in self.timeframes():
            for sym in self.symbols(tf):
                p = self.path(sym, tf)
                s = (
                    pl.scan_parquet(p)
                    .select(
                        pl.len().alias("rows"),
                        pl.col("filled").sum().alias("filled"),
                        pl.col("timestamp").min().alias("first"),
                        pl.col("timestamp").max().alias("last"),
                    )
                    .collect()
                    .row(0, named=True)
                )
                out.append(
                    PartitionInfo(
                        symbol=sym,
                        timeframe=tf.label,
                        rows=int(s["rows"]),
                        filled=int(s["filled"] or 0),
                        first=s["first"],
                        last=s["last"],
                        path=str(p),
                    )
                )
        return out
