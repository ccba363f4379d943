"""Parquet store: idempotent re-import, appends, conflict rules, atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from cappuccino.data.importing import import_files
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from tests.conftest import make_bars

H1 = Timeframe.parse("1h")


def digest(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*.parquet"))
    }


def test_import_all_real_files_then_reimport_changes_nothing(
    tmp_path: Path, shared_dir: Path
) -> None:
    files = sorted(shared_dir.glob("Binance_*_1h.csv"))
    store = ParquetStore(tmp_path)
    first = import_files(files, store)
    btc = next(r for r in first.rows() if r["symbol"] == "BTC/USDT")
    assert (
        btc["rows_read"],
        btc["duplicates_removed"],
        btc["rows_stored"],
        btc["gaps"],
        btc["missing_bars"],
    ) == (36_565, 2_649, 33_916, 8, 16)
    before = digest(tmp_path)
    assert len(before) == 25
    second = import_files(files, store)
    assert all(
        u.rows_new == 0 and u.rows_updated == 0 and not u.written for u in second.upserts.values()
    )
    assert digest(tmp_path) == before  # same bytes, not even rewritten
    assert store.read(H1, ["BTC/USDT"]).height == 33_916


def test_newer_rows_append(tmp_path: Path) -> None:
    bars = make_bars(n=100)
    store = ParquetStore(tmp_path)
    (u1,) = store.upsert(bars.head(60), H1)
    (u2,) = store.upsert(bars, H1)
    assert (u1.rows_new, u2.rows_new, u2.rows_updated, u2.rows_stored) == (60, 40, 0, 100)
    assert store.read_symbol("AAA/USDT", H1).equals(bars)


def test_conflicts_filled_placeholder_replaced_and_completed_candle_wins(tmp_path: Path) -> None:
    bars = make_bars(n=5)
    store = ParquetStore(tmp_path)
    placeholder = bars.with_columns(
        pl.when(pl.int_range(5) == 2).then(True).otherwise(pl.col("filled")).alias("filled"),
        pl.when(pl.int_range(5) == 2).then(0.0).otherwise(pl.col("volume")).alias("volume"),
    )
    store.upsert(placeholder, H1)
    (u,) = store.upsert(bars, H1)
    assert (u.rows_new, u.rows_updated) == (0, 1)
    assert store.read_symbol("AAA/USDT", H1).equals(bars)
    # a filled bar never replaces a real one
    (u,) = store.upsert(placeholder, H1)
    assert (u.rows_updated, u.rows_conflicting_kept, u.written) == (0, 1, False)
    # between two real bars the larger volume (completed candle) wins; ties keep the stored one
    bigger = bars.with_columns(
        (pl.col("volume") * 2).alias("volume"), (pl.col("close") * 1.01).alias("close")
    )
    (u,) = store.upsert(bigger, H1)
    assert u.rows_updated == 5
    (u,) = store.upsert(bars, H1)
    assert (u.rows_updated, u.rows_conflicting_kept) == (0, 5)
    tie = bigger.with_columns((pl.col("close") * 1.02).alias("close"))  # same volume, other close
    (u,) = store.upsert(tie, H1)
    assert (u.rows_updated, u.rows_conflicting_kept, u.written) == (0, 5, False)
    assert store.read_symbol("AAA/USDT", H1).equals(bigger)


def test_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = make_bars(n=10)
    store = ParquetStore(tmp_path)
    store.upsert(bars.head(5), H1)
    before = digest(tmp_path)

    def boom(self: pl.DataFrame, path: object, **kw: object) -> None:
        Path(str(path)).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        store.upsert(bars, H1)
    monkeypatch.undo()
    assert digest(tmp_path) == before
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert store.read_symbol("AAA/USDT", H1).height == 5


def test_unknown_symbol_read_is_clear(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.upsert(make_bars(n=3), H1)
    with pytest.raises(ValueError, match=r"\['ZZZ/USDT'\] not in store"):
        store.read(H1, ["ZZZ/USDT"])
    assert store.info()[0].rows == 3 and store.symbols(H1) == ["AAA/USDT"]
