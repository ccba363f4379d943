"""``data resample`` against an independent pandas resample of the raw Binance export:
the same buckets and values, the gaps' buckets left out (or stored flagged when the gaps
were filled), the still-open bucket never stored, idempotent, weeks on Mondays."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from cappuccino.data.importing import import_files
from cappuccino.data.resample import check_timeframes, resample_bars, resample_store
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from tests.conftest import shared_file

H1, H4, D1 = (Timeframe.parse(t) for t in ("1h", "4h", "1d"))


def _raw(path: Path) -> pd.DataFrame:
    """The CryptoDataDownload export read with pandas alone: UTC hourly rows, oldest
    first (``unix`` is seconds in old rows, milliseconds in recent ones)."""
    df = pd.read_csv(path, skiprows=1)
    unix = df["unix"].astype("float64")
    ms = np.where(unix < 1e11, unix * 1000, unix).astype("int64")
    df.index = pd.to_datetime(ms, unit="ms", utc=True)
    return df.sort_index()


def _stored(store: ParquetStore, tf: Timeframe) -> pd.DataFrame:
    """The stored bars as pandas, indexed by UTC open time (no pyarrow needed)."""
    frame = store.read(tf).with_columns(pl.col("timestamp").dt.epoch("ms"))
    df = pd.DataFrame(frame.to_dict(as_series=False))
    df.index = pd.to_datetime(df.pop("timestamp"), unit="ms", utc=True)
    return df


def _reference(raw: pd.DataFrame, rule: str, k: int) -> pd.DataFrame:
    """pandas' resample on epoch-aligned buckets, complete buckets (k bars) only."""
    vol = next(c for c in raw.columns if c.startswith("Volume") and c != "Volume USDT")
    agg = raw.resample(rule, origin="epoch", label="left", closed="left").agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            vol: "sum",
            "Volume USDT": "sum",
            "tradecount": "sum",
            "unix": "count",
        }
    )
    return agg[agg["unix"] == k].rename(columns={vol: "volume", "Volume USDT": "quote_volume"})


@pytest.mark.parametrize(("target", "rule", "k"), [(H4, "4h", 4), (D1, "1D", 24)])
def test_buckets_equal_an_independent_resample_of_the_raw_file(
    tmp_path: Path, target: Timeframe, rule: str, k: int
) -> None:
    path = shared_file("ADAUSDT")
    store = ParquetStore(tmp_path / "s")
    import_files([path], store)  # gaps kept: 7 gaps, 12 missing hours
    (res,) = resample_store(store, H1, target)
    ref = _reference(_raw(path), rule, k)
    got = _stored(store, target)
    assert list(got.index.astype("int64") // 10**6) == list(ref.index.astype("int64") // 10**6)
    for col in ("open", "high", "low", "close", "volume", "quote_volume"):
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-12)
    assert (got["trades"].to_numpy() == ref["tradecount"].to_numpy()).all()
    assert not got["filled"].any() and res.filled == 0
    # every partial bucket is counted: the gaps' and the first, half-covered one
    counts = _raw(path).resample(rule, origin="epoch").size()
    assert res.incomplete == int(((counts > 0) & (counts < k)).sum()) > 0
    assert res.complete == len(ref) == res.rows_new and res.open_bucket is None
    # idempotent
    (again,) = resample_store(store, H1, target)
    assert (again.rows_new, again.rows_updated, again.rows_stored) == (0, 0, len(ref))


def test_buckets_with_filled_bars_are_stored_flagged_and_counted(tmp_path: Path) -> None:
    path = shared_file("ADAUSDT")
    store = ParquetStore(tmp_path / "s")
    import_files([path], store, on_gap="fill")  # every gap <= 24 bars: all filled
    (res,) = resample_store(store, H1, H4)
    raw = _raw(path)
    hours = pd.date_range(raw.index[0], raw.index[-1], freq="1h")
    missing = hours.difference(raw.index)
    assert len(missing) == 12
    flagged = {t.floor("4h") for t in missing}
    got = _stored(store, H4)
    assert set(got.index[got["filled"]]) == flagged and res.filled == len(flagged)
    assert res.incomplete == 1  # only the first bucket (one bar at 23:00) is partial


def test_the_open_bucket_is_never_stored_and_lands_once_complete(tmp_path: Path) -> None:
    path = shared_file("ADAUSDT")
    raw = pl.read_csv(path, skip_rows=1)
    early = tmp_path / "early.csv"
    raw.filter(pl.col("date") <= "2021-06-30 21:00:00").write_csv(early)  # 20:00, 21:00 of 4
    store = ParquetStore(tmp_path / "s")
    import_files([early], store)
    (res,) = resample_store(store, H1, H4)
    assert res.open_bucket == "2021-06-30T20:00:00+00:00"
    last = store.read(H4)["timestamp"].max()
    assert last == datetime.fromisoformat("2021-06-30T16:00:00+00:00")
    import_files([path], store)  # the rest of the day arrives
    (res,) = resample_store(store, H1, H4)
    assert res.open_bucket is None and (res.rows_new, res.rows_updated) == (1, 0)
    assert store.read(H4)["timestamp"].max() == datetime.fromisoformat("2021-06-30T20:00:00+00:00")


def test_aggregation_by_hand_and_weeks_on_mondays() -> None:
    """Two 2h buckets by hand (one with a filled bar, one with a null trade count), and
    1w buckets opening on Mondays 00:00 UTC."""
    t0 = int(datetime.fromisoformat("2021-01-04T00:00:00+00:00").timestamp() * 1000)  # Monday
    bars = pl.DataFrame({
        "timestamp": [t0 + h * 3_600_000 for h in range(4)], "symbol": ["X/USDT"] * 4,
        "open": [10.0, 11.0, 12.0, 13.0], "high": [12.0, 15.0, 13.0, 14.0],
        "low": [9.0, 10.0, 11.0, 7.0], "close": [11.0, 12.0, 13.0, 12.5],
        "volume": [1.0, 2.0, 3.0, 4.0], "quote_volume": [10.0, 20.0, 30.0, 40.0],
        "trades": [1, 2, None, 4], "filled": [False, True, False, False],
    }).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))  # fmt: skip
    out, rep = resample_bars(bars, H1, Timeframe.parse("2h"))
    assert out.select("open", "high", "low", "close", "volume", "trades", "filled").rows() == [
        (10.0, 15.0, 9.0, 12.0, 3.0, 3, True), (12.0, 14.0, 7.0, 12.5, 7.0, None, False)]  # fmt: skip
    assert rep["X/USDT"] == {"source_bars": 4, "complete": 2, "filled": 1,
                                  "incomplete": 0, "open_bucket": None}  # fmt: skip
    week = pl.concat([bars.with_columns(pl.col("timestamp").dt.offset_by(f"{d * 24}h"))
                      for d in range(7)])  # fmt: skip
    _, rep = resample_bars(week, H1, Timeframe.parse("1w"))
    assert rep["X/USDT"]["open_bucket"] == "2021-01-04T00:00:00+00:00"  # a Monday, still open
    with pytest.raises(ValueError, match="--to: got 90m, expected a whole multiple of --from 1h"):
        check_timeframes(H1, Timeframe.parse("90m"))
    with pytest.raises(ValueError, match="--to: got 5h, expected a timeframe that divides a day"):
        check_timeframes(H1, Timeframe.parse("5h"))
