"""Validation: duplicates (the completed-candle rule), gaps, OHLC, order, interval, on the real files too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from cappuccino.data.errors import DataError
from cappuccino.data.readers import read_bars
from cappuccino.data.schema import Timeframe
from cappuccino.data.validate import clean_bars, fill_gaps
from tests.conftest import make_bars

HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


def csv(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "x.csv"
    p.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return p


def row(
    hour: int, close: str = "1.5", volume: str = "10", trades: str = "3", unix_s: bool = False
) -> str:
    t = 1609459200 + 3600 * hour
    unix = f"{t}.0" if unix_s else str(t * 1000)
    high = max(2.0, float(close))
    return f"{unix},2021-01-01 {hour:02d}:00:00,BTC/USDT,1,{high},0.5,{close},{volume},15,{trades}"


def test_identical_duplicates_collapse(tmp_path: Path) -> None:
    c = clean_bars([read_bars(csv(tmp_path, [row(1), row(1), row(0)]))])
    r = c.reports["BTC/USDT"]
    assert (r.duplicates_removed, r.duplicates_identical, r.duplicates_conflicting) == (1, 1, 0)
    assert c.frame.height == 2


def test_incomplete_candle_loses_to_the_completed_one(tmp_path: Path) -> None:
    # second row captured before the close: smaller volume, different close
    c = clean_bars(
        [
            read_bars(
                csv(tmp_path, [row(1, "1.7", "12.5"), row(1, "1.6", "8.25", "NULL", True), row(0)])
            )
        ]
    )
    r = c.reports["BTC/USDT"]
    assert (r.duplicates_removed, r.duplicates_conflicting, r.duplicates_incomplete_candle) == (
        1,
        1,
        1,
    )
    kept = c.frame.filter(pl.col("timestamp") == datetime(2021, 1, 1, 1, tzinfo=UTC)).row(
        0, named=True
    )
    assert (kept["close"], kept["volume"]) == (1.7, 12.5)
    # the completed candle wins even when it is the rounded, later line
    c = clean_bars(
        [
            read_bars(
                csv(
                    tmp_path,
                    [row(0), row(1, "1.6", "8.25123456"), row(1, "1.7", "12.5", "NULL", True)],
                )
            )
        ]
    )
    assert c.frame["close"].to_list() == [1.5, 1.7]


def test_rounding_difference_keeps_the_precise_row(tmp_path: Path) -> None:
    # as in the real BTC file: 2523.07949400 (full) vs 2523.08 (rounded, larger by rounding)
    c = clean_bars(
        [
            read_bars(
                csv(
                    tmp_path,
                    [
                        row(1, "18164.80000000", "2523.07949400", "51191"),
                        row(1, "18164.8", "2523.08", "NULL", True),
                        row(0),
                    ],
                )
            )
        ]
    )
    kept = c.frame.row(1, named=True)
    assert (kept["volume"], kept["trades"]) == (2523.079494, 51191)
    r = c.reports["BTC/USDT"]
    assert (r.duplicates_conflicting, r.duplicates_incomplete_candle) == (1, 0)


def test_gaps_counted_and_policies(tmp_path: Path) -> None:
    rows = [
        row(h, close=str(1 + h / 10)) for h in (0, 1, 2, 5, 6, 9)
    ]  # gaps: 3-4 (2 bars), 7-8 (2 bars)
    raw = read_bars(csv(tmp_path, rows))
    r = clean_bars([raw]).reports["BTC/USDT"]
    assert (r.gaps, r.missing_bars, r.longest_gap_bars, r.filled_bars) == (2, 4, 2, 0)
    c = clean_bars([raw], on_gap="fill")
    assert c.frame.height == 10 and c.reports["BTC/USDT"].filled_bars == 4
    filled = c.frame.filter(pl.col("filled"))
    assert filled["timestamp"].dt.hour().to_list() == [3, 4, 7, 8]
    assert filled["close"].to_list() == [1.2, 1.2, 1.6, 1.6]  # previous close carried forward
    assert (
        filled["open"].to_list()
        == filled["high"].to_list()
        == filled["low"].to_list()
        == [1.2, 1.2, 1.6, 1.6]
    )
    assert filled["volume"].to_list() == [0.0] * 4 and filled["trades"].to_list() == [0] * 4
    with pytest.raises(DataError, match=r"x.csv:5: column 'timestamp'.*2 missing bars"):
        clean_bars([raw], on_gap="error")


def test_impossible_bars_error_by_default_or_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [
        row(0),
        "1609462800000,2021-01-01 01:00:00,BTC/USDT,1,1.2,0.5,1.5,10,15,3",  # high < close
        "1609466400000,2021-01-01 02:00:00,BTC/USDT,1,2,1.1,1.5,10,15,3",  # low > open
        "1609470000000,2021-01-01 03:00:00,BTC/USDT,0,2,0,1.5,0,15,3",
    ]  # non-positive, zero volume
    raw = read_bars(csv(tmp_path, rows))
    with pytest.raises(DataError, match=r"x.csv:3: .*'high': 1.2.*expected high >= open and close"):
        clean_bars([raw])
    c = clean_bars([raw], on_bad_ohlc="drop")
    r = c.reports["BTC/USDT"]
    assert (r.high_below_open_close, r.low_above_open_close, r.nonpositive_prices) == (1, 1, 1)
    assert c.frame.height == 1 and r.impossible_dropped == 3 and r.zero_volume_bars == 0


def test_input_order_recorded(tmp_path: Path) -> None:
    assert (
        clean_bars([read_bars(csv(tmp_path, [row(2), row(1), row(0)]))])
        .reports["BTC/USDT"]
        .input_order
        == "descending"
    )
    r = clean_bars([read_bars(csv(tmp_path, [row(0), row(2), row(1), row(3)]))]).reports["BTC/USDT"]
    assert (r.input_order, r.out_of_order_steps) == ("unsorted", 1)


def test_interval_inferred_and_off_grid_rejected(tmp_path: Path) -> None:
    assert clean_bars([read_bars(csv(tmp_path, [row(0), row(1), row(3)]))]).timeframe == Timeframe(
        3_600_000
    )
    bad = "1609461000000,2021-01-01 00:30:00,BTC/USDT,1,2,0.5,1.5,10,15,3"
    with pytest.raises(DataError, match="1h grid"):
        clean_bars([read_bars(csv(tmp_path, [row(0), bad, row(1), row(2), row(3), row(4)]))])


def test_errors_name_the_file_and_line_of_the_offending_row(tmp_path: Path) -> None:
    first = csv(tmp_path, [row(0), row(1), row(2)])
    second = tmp_path / "y.csv"
    second.write_text(
        HEADER
        + "\n"
        + row(3)
        + "\n"
        + row(4)
        + "\n"
        + "1609477200000,2021-01-01 05:00:00,BTC/USDT,1,1.2,0.5,1.5,10,15,3\n"
    )
    with pytest.raises(DataError, match=r"y.csv:4: .*expected high >= open and close"):
        clean_bars([read_bars(first), read_bars(second)], on_bad_ohlc="error")
    off = "1609475400000,2021-01-01 04:30:00,BTC/USDT,1,2,0.5,1.5,10,15,3"
    second.write_text(HEADER + "\n" + row(3) + "\n" + off + "\n")
    with pytest.raises(DataError, match=r"y.csv:3: column 'timestamp'.*1h grid"):
        clean_bars([read_bars(first), read_bars(second)])


def test_fill_gaps_multi_symbol_counts() -> None:
    a = make_bars("A/USDT", 10).filter(~pl.int_range(10).is_in([3, 4]))
    b = make_bars("B/USDT", 6)
    filled, counts = fill_gaps(
        pl.concat([a, b]).sort(["symbol", "timestamp"]), Timeframe(3_600_000)
    )
    assert counts == {"A/USDT": 2, "B/USDT": 0}
    assert filled.height == 16


def test_real_exports_report_the_known_defects(shared_dir: Path) -> None:
    files = sorted(shared_dir.glob("Binance_*_1h.csv"))
    assert len(files) == 25
    c = clean_bars([read_bars(f) for f in files])
    rep = c.reports
    btc = rep["BTC/USDT"]
    assert (btc.rows_read, btc.duplicates_removed, btc.rows_valid, btc.gaps, btc.missing_bars) == (
        36_565,
        2_649,
        33_916,
        8,
        16,
    )
    assert btc.duplicates_conflicting == 2_649 and btc.duplicates_identical == 0
    for s in ("ETH/USDT", "LTC/USDT", "NEO/USDT"):
        assert rep[s].duplicates_removed == 2_649
    assert rep["LTC/USDT"].missing_bars == 1_963 and rep["NEO/USDT"].missing_bars == 1_411
    for s in ("ADA/USDT", "XRP/USDT", "ZEC/USDT"):
        assert (rep[s].rows_read, rep[s].gaps, rep[s].missing_bars) == (7_981, 7, 12)
    assert rep["ICP/USDT"].rows_read == 1_221
    zero = [r.zero_volume_bars for r in rep.values()]
    assert min(z for z in zero if z) == 2 and max(zero) == 572
    assert all(r.input_order == "descending" for r in rep.values())
    assert c.frame.select(pl.struct("symbol", "timestamp").is_unique().all()).item()


def test_sorted_and_gap_free_frames_are_returned_as_they_are() -> None:
    from cappuccino.data.schema import sort_bars

    tf = Timeframe.parse("1h")
    bars = pl.concat([make_bars("AAA/USDT", 30), make_bars("BBB/USDT", 30, seed=1)])
    assert sort_bars(bars) is bars  # no copy of what is already in order
    shuffled = bars.sample(fraction=1.0, shuffle=True, seed=0)
    assert sort_bars(shuffled).equals(bars)
    same, counts = fill_gaps(bars, tf)
    assert same is bars and counts == {"AAA/USDT": 0, "BBB/USDT": 0}
    # with a hole, the same frame comes back with the hole filled and counted
    holed = bars.filter(pl.int_range(pl.len()) != 10)
    filled, counts = fill_gaps(holed, tf)
    assert counts == {"AAA/USDT": 1, "BBB/USDT": 0} and filled.height == bars.height
    assert filled["filled"].sum() == 1
