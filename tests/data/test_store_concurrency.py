"""Concurrent writers: imports into one store at the same time lose no rows (partition
locks), and a killed writer's temporary files are cleaned by the next write."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import polars as pl

from cappuccino.data.importing import import_files
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore

H1 = Timeframe.parse("1h")
PAIRS = 20


def _writer(path: str, roots: list[str], barrier: mp.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    """One side of every pair: meet the other writer, then import into that round's store."""
    for root in roots:
        barrier.wait(timeout=120)  # both writers of the round start together
        import_files([Path(path)], ParquetStore(Path(root)), timeframe=H1)


def test_twenty_concurrent_import_pairs_lose_no_rows(tmp_path: Path) -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol") == "BTC/USDT").head(1200)
    halves = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    bars.head(600).write_parquet(halves[0])
    bars.tail(600).write_parquet(halves[1])
    roots = [str(tmp_path / f"store{i}") for i in range(PAIRS)]
    ctx = mp.get_context("spawn")  # fork after polars' thread pool started can deadlock
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(h), roots, barrier)) for h in halves]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    lost = []
    for root in roots:
        stored = ParquetStore(Path(root)).read_symbol("BTC/USDT", H1)
        lost.append(bars.height - stored.height)
        assert stored["timestamp"].is_sorted() and not stored["timestamp"].is_duplicated().any()
    assert lost == [0] * PAIRS  # every row of both files, in every pair


def test_a_killed_writers_temporary_files_are_removed_and_counted(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "store")
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol") == "ETH/USDT").head(100)
    src = tmp_path / "eth.parquet"
    bars.write_parquet(src)
    import_files([src], store, timeframe=H1)
    part = store.path("ETH/USDT", H1)
    orphans = [part.parent / f".{part.name}.dead{i}.tmp" for i in range(2)]
    for o in orphans:
        o.write_bytes(b"half a parquet file")  # what a kill -9 mid-write leaves
    bars.with_columns(pl.col("volume") * 2).write_parquet(src)  # a change, so it writes
    rep = import_files([src], store, timeframe=H1)
    assert rep.upserts["ETH/USDT"].orphan_temps_removed == 2
    assert rep.rows()[0]["orphan_temps_removed"] == 2
    assert not any(o.exists() for o in orphans)
    assert store.read_symbol("ETH/USDT", H1).height == 100
