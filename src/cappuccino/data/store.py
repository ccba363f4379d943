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

Damage: a partition that is not readable Parquet, is empty, or lacks the canonical
columns and types is an error naming its file on every read (:class:`DataError`).
:meth:`ParquetStore.verify` checks every partition (``cappuccino data verify``); an
upsert with ``repair=True`` sets a broken partition aside (``bars.broken-<UTC>.parquet``,
kept, never deleted) and rewrites it from the incoming bars.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.data.errors import DataError
from cappuccino.data.schema import (
    CANONICAL_COLUMNS,
    CANONICAL_SCHEMA,
    VALUE_COLUMNS,
    Timeframe,
    empty_bars,
    resolve_symbols,
    sort_bars,
)
from cappuccino.utils.io import (
    atomic_write_json,
    atomic_write_parquet,
    exclusive_lock,
    remove_orphan_temps,
)

STORE_FORMAT = 1
_MARKER = "cappuccino-store.json"
_READ_ERRORS = (pl.exceptions.PolarsError, OSError)
_HINT = "`cappuccino data verify --store DIR` checks every partition; re-import with --repair"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_partition(path: Path) -> None:
    """Raise :class:`DataError` naming ``path`` unless it is a readable Parquet file with the
    canonical bar columns and types (its footer only; :meth:`ParquetStore.verify` reads all)."""
    try:
        schema = pl.read_parquet_schema(path)
    except _READ_ERRORS as exc:
        raise DataError(
            str(path),
            expected="a readable Parquet bar partition",
            detail=f"{_first_line(exc)}; {_HINT}",
        ) from exc
    missing = [c for c in CANONICAL_COLUMNS if c not in schema]
    wrong = {
        c: str(schema[c])
        for c in CANONICAL_COLUMNS
        if c in schema and schema[c] != CANONICAL_SCHEMA[c]
    }
    if missing or wrong:
        found = f"missing columns {missing}" if missing else f"column types {wrong}"
        raise DataError(
            str(path),
            value=found,
            expected="the canonical bar schema "
            + ", ".join(f"{c}: {t}" for c, t in CANONICAL_SCHEMA.items()),
            detail=_HINT,
        )


def _read_checked(path: Path, read: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    check_partition(path)
    try:
        return read()
    except _READ_ERRORS as exc:
        raise DataError(
            str(path),
            expected="a readable Parquet bar partition",
            detail=f"{_first_line(exc)}; {_HINT}",
        ) from exc


@dataclass
class PartitionCheck:
    """What :meth:`ParquetStore.verify` found in one partition."""

    symbol: str
    timeframe: str
    path: str
    rows: int
    ok: bool
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    repaired_from: str | None = None  # where the broken partition was set aside (repair=True)


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
        if self.root.exists() and not self.root.is_dir():
            raise DataError(str(self.root), value="a file", expected="a store folder (--store)")
        marker = self.root / _MARKER
        if marker.exists():
            fmt = json.loads(marker.read_text()).get("format")
            if fmt != STORE_FORMAT:
                raise ValueError(f"{marker}: store format {fmt!r}, expected {STORE_FORMAT}")

    def _ensure_marker(self) -> None:
        marker = self.root / _MARKER
        if not marker.exists():
            atomic_write_json(marker, {"format": STORE_FORMAT})

    @property
    def synthetic(self) -> dict[str, Any] | None:
        """The generator settings of a store of synthetic bars (``cappuccino data
        synthetic``), None for a store of real bars."""
        marker = self.root / _MARKER
        if not marker.exists():
            return None
        spec: dict[str, Any] | None = json.loads(marker.read_text()).get("synthetic")
        return spec

    def require_real(self, source: str) -> None:
        """``ValueError`` when real bars from ``source`` would join synthetic ones: a store
        holds one or the other, so synthetic bars never reach a real-data result."""
        if self.synthetic is not None:
            raise ValueError(
                f"--store: {self.root} holds synthetic bars (cappuccino data synthetic); "
                f"import {source} into another store"
            )

    def mark_synthetic(self, spec: dict[str, Any]) -> None:
        """Declare this store synthetic with the generator ``spec``; ``ValueError`` when it
        already holds real bars (or synthetic bars of other settings)."""
        have = self.synthetic
        if have is None and any(self.root.glob("timeframe=*/symbol=*/bars.parquet")):
            raise ValueError(
                f"--store: {self.root} holds real bars; synthetic bars go to a store of their "
                "own (they must never mix into real-data results)"
            )
        if have is not None and have != spec:
            raise ValueError(
                f"--store: {self.root} holds synthetic bars of other settings {have}; expected "
                f"{spec} (use another store)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / _MARKER, {"format": STORE_FORMAT, "synthetic": spec})

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
        if not p.exists():
            return empty_bars()
        return _read_checked(p, lambda: pl.read_parquet(p).select(CANONICAL_COLUMNS))

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
        paths = [self.path(s, timeframe) for s in syms]
        for path in paths:
            check_partition(path)

        def window(lf: pl.LazyFrame) -> pl.LazyFrame:
            lf = lf.select(CANONICAL_COLUMNS)
            if start is not None:
                lf = lf.filter(pl.col("timestamp") >= start)
            if end is not None:
                lf = lf.filter(pl.col("timestamp") <= end)
            return lf

        try:
            return sort_bars(window(pl.scan_parquet(paths)).collect())
        except _READ_ERRORS:  # name the damaged file: read them one by one
            frames = [
                _read_checked(p, lambda p=p: window(pl.scan_parquet(p)).collect())  # type: ignore[misc]
                for p in paths
            ]
            return sort_bars(pl.concat(frames))

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
        out = _read_checked(
            p,
            lambda: (
                pl.scan_parquet(p)
                .filter(~pl.col("filled"))
                .select(pl.col("timestamp").max())
                .collect()
            ),
        )
        value: datetime | None = out.item()
        return value

    def upsert(
        self, frame: pl.DataFrame, timeframe: Timeframe, *, repair: bool = False
    ) -> list[UpsertResult]:
        """Merge validated canonical bars into the store; see the module docstring for the rules.

        A partition that cannot be read is an error, or with ``repair`` is set aside and
        rewritten from ``frame``."""
        results = []
        for symbol in sorted(frame["symbol"].unique().to_list()):
            part = frame.filter(pl.col("symbol") == symbol).select(CANONICAL_COLUMNS)
            results.append(self._upsert_one(symbol, part, timeframe, repair))
        return results

    def _upsert_one(
        self, symbol: str, incoming: pl.DataFrame, timeframe: Timeframe, repair: bool
    ) -> UpsertResult:
        target = self.path(symbol, timeframe)
        with exclusive_lock(target.parent / ".lock"):
            orphans = remove_orphan_temps(target)
            return replace(self._merge_write(symbol, incoming, timeframe, repair),
                           orphan_temps_removed=orphans)  # fmt: skip

    def _merge_write(
        self, symbol: str, incoming: pl.DataFrame, timeframe: Timeframe, repair: bool
    ) -> UpsertResult:
        """Read, merge and write one partition (the caller holds its lock)."""
        repaired_from = None
        try:
            stored = self.read_symbol(symbol, timeframe)
        except DataError:
            if not repair:
                raise
            target = self.path(symbol, timeframe)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            aside = target.with_name(f"bars.broken-{stamp}.parquet")
            os.replace(target, aside)
            repaired_from, stored = str(aside), empty_bars()
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
        written = bool(counts["new"] or counts["updated"] or repaired_from)
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
            repaired_from=repaired_from,
        )

    def verify(self) -> list[PartitionCheck]:
        """Read every partition whole: readable, canonical schema, its own symbol only,
        timestamps strictly increasing on the timeframe's grid. One row per partition."""
        out = []
        for tf in self.timeframes():
            for sym in self.symbols(tf):
                p = self.path(sym, tf)
                rows, problem = 0, ""
                try:
                    frame = _read_checked(p, lambda p=p: pl.read_parquet(p))  # type: ignore[misc]
                    rows = frame.height
                    problem = _partition_problem(frame, sym, tf)
                except DataError as exc:
                    problem = str(exc).removeprefix(f"{p}: ")
                out.append(
                    PartitionCheck(
                        symbol=sym,
                        timeframe=tf.label,
                        path=str(p),
                        rows=rows,
                        ok=not problem,
                        problem=problem,
                    )
                )
        return out

    def info(self) -> list[PartitionInfo]:
        out = []
        for tf in self.timeframes():
            for sym in self.symbols(tf):
                p = self.path(sym, tf)
                s = _read_checked(
                    p,
                    lambda p=p: (
                        pl.scan_parquet(p)  # type: ignore[misc]
                        .select(
                            pl.len().alias("rows"),
                            pl.col("filled").sum().alias("filled"),
                            pl.col("timestamp").min().alias("first"),
                            pl.col("timestamp").max().alias("last"),
                        )
                        .collect()
                    ),
                ).row(0, named=True)
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


def _partition_problem(frame: pl.DataFrame, symbol: str, timeframe: Timeframe) -> str:
    """What is wrong with the rows of a readable partition ('' when nothing)."""
    if frame.height == 0:
        return "no rows"
    others = frame.filter(pl.col("symbol") != symbol)["symbol"].unique().to_list()
    if others:
        return f"rows of other symbols {sorted(others)[:3]}"
    step = frame["timestamp"].diff().dt.total_milliseconds().drop_nulls()
    if (step <= 0).any():
        return f"{int((step <= 0).sum())} timestamps not strictly increasing"
    if (step % timeframe.ms != 0).any():
        return f"{int((step % timeframe.ms != 0).sum())} steps off the {timeframe} grid"
    nulls = frame.select(
        pl.col(c).null_count() for c in ("timestamp", "open", "high", "low", "close")
    )
    if sum(nulls.row(0)):
        return "null timestamps or prices"
    return ""
