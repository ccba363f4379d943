"""Readers: every CryptoDataDownload shape in ../shared/data, other layouts, generic CSV, Parquet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from cappuccino.data.errors import DataError
from cappuccino.data.readers import detect_format, read_bars
from cappuccino.data.readers.generic_csv import read_generic_csv
from cappuccino.data.readers.parquet import read_parquet_bars
from tests.conftest import make_bars, shared_file

HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


def write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_real_btc_export_mixed_units_and_date_formats() -> None:
    raw = read_bars(shared_file("BTCUSDT"))
    f = raw.frame
    assert raw.rows_read == 36_565
    assert f.height == 36_565
    # older rows carry unix in seconds ("1502942400.0"), newer in ms
    assert (
        raw.unix_seconds_rows == int((f["_line"] >= 7_982).sum()) or raw.unix_seconds_rows > 28_000
    )
    last = f.filter(pl.col("_line") == 36_566).row(0, named=True)  # "1502942400.0,2017-08-17 04-AM"
    assert last["timestamp"] == datetime(2017, 8, 17, 4, tzinfo=UTC)
    assert last["open"] == 16199.91 and last["trades"] is None
    newest = f.filter(pl.col("_line") == 2).row(0, named=True)  # 1625094000000,2021-06-30 23:00:00
    assert newest["timestamp"] == datetime(2021, 6, 30, 23, tzinfo=UTC)
    assert newest["volume"] == 3733.522205 and newest["quote_volume"] == 130838372.08342538
    assert newest["trades"] == 49444 and newest["symbol"] == "BTC/USDT"
    # 2017 rows whose date is 4 hours off their unix value are counted, unix wins
    assert raw.date_unix_mismatch == 91


def test_url_first_line_is_skipped() -> None:
    raw = read_bars(shared_file("ADAUSDT"))
    assert raw.rows_read == 7_981
    assert raw.frame["_line"].min() == 3  # URL line 1, header line 2
    assert raw.frame["symbol"].unique().to_list() == ["ADA/USDT"]


def test_am_pm_hours_and_null_tradecount(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        HEADER + "\n"
        "1502971200.0,2017-08-17 12-PM,BTC/USDT,1,2,0.5,1.5,10,15,NULL\n"
        "1502928000.0,2017-08-17 12-AM,BTC/USDT,1,2,0.5,1.5,10,15,NULL\n"
        "1502967600000,2017-08-17 11:00:00,BTC/USDT,1,2,0.5,1.5,10.123,15,7\n",
    )
    f = read_bars(p).frame
    assert f["timestamp"].to_list() == [
        datetime(2017, 8, 17, 12, tzinfo=UTC),
        datetime(2017, 8, 17, 0, tzinfo=UTC),
        datetime(2017, 8, 17, 11, tzinfo=UTC),
    ]
    assert f["trades"].to_list() == [None, None, 7]
    assert f["_volume_decimals"].to_list() == [0, 0, 3]


def test_date_unix_disagreement_is_counted_and_unix_wins(tmp_path: Path) -> None:
    p = write(tmp_path, HEADER + "\n1502942400,2017-08-17 08-AM,BTC/USDT,1,2,0.5,1.5,10,15,3\n")
    raw = read_bars(p)
    assert raw.date_unix_mismatch == 1
    assert raw.frame["timestamp"][0] == datetime(2017, 8, 17, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "row", "symbol", "volume", "quote"),
    [
        # Bitstamp / Coinbase: USD quote, seconds
        (
            "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD",
            "1609459200,2021-01-01 00:00:00,BTC/USD,1,2,0.5,1.5,3,4",
            "BTC/USD",
            3.0,
            4.0,
        ),
        # Gemini: "Unix Timestamp" in ms and a single Volume column
        (
            "Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume",
            "1609459200000,2021-01-01 00:00:00,BTCUSD,1,2,0.5,1.5,3",
            "BTCUSD",
            3.0,
            None,
        ),
        # symbol without separator: base taken from the volume column names
        (
            "unix,date,symbol,open,high,low,close,Volume ETH,Volume EUR",
            "1609459200,2021-01-01 00:00:00,ETHEUR,1,2,0.5,1.5,3,4",
            "ETH/EUR",
            3.0,
            4.0,
        ),
        # old export without unix: the date is the timestamp (UTC)
        (
            "Date,Symbol,Open,High,Low,Close,Volume XRP,Volume USD",
            "2021-01-01 12-AM,XRP/USD,1,2,0.5,1.5,3,4",
            "XRP/USD",
            3.0,
            4.0,
        ),
    ],
)
def test_other_exchange_layouts(
    tmp_path: Path, header: str, row: str, symbol: str, volume: float, quote: float | None
) -> None:
    p = write(tmp_path, "https://www.CryptoDataDownload.com\n" + header + "\n" + row + "\n")
    assert detect_format(p) == "cryptodatadownload"
    r = read_bars(p).frame.row(0, named=True)
    assert r["symbol"] == symbol
    assert r["timestamp"] == datetime(2021, 1, 1, tzinfo=UTC)
    assert (r["volume"], r["quote_volume"]) == (volume, quote)


def test_bad_number_names_file_line_and_value(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        HEADER + "\n"
        "1625094000000,2021-06-30 23:00:00,BTC/USDT,1,2,0.5,1.5,10,15,3\n"
        "1625090400000,2021-06-30 22:00:00,BTC/USDT,1,2,0.5,abc,10,15,3\n",
    )
    with pytest.raises(DataError) as e:
        read_bars(p)
    assert f"{p}:3" in str(e.value)
    assert "'close'" in str(e.value) and "'abc'" in str(e.value)


def test_missing_required_value_and_bad_date_are_errors(tmp_path: Path) -> None:
    p = write(tmp_path, HEADER + "\n1625094000000,2021-06-30 23:00:00,BTC/USDT,1,2,0.5,,10,15,3\n")
    with pytest.raises(DataError, match=r":2: column 'close'"):
        read_bars(p)
    p = write(tmp_path, HEADER + "\n1625094000000,30/06/2021 23h,BTC/USDT,1,2,0.5,1,10,15,3\n")
    with pytest.raises(DataError, match=r":2: column 'date': got '30/06/2021 23h'"):
        read_bars(p)


def test_wrong_column_count_is_an_error_or_counted_skip(tmp_path: Path) -> None:
    good = "1625094000000,2021-06-30 23:00:00,BTC/USDT,1,2,0.5,1.5,10,15,3\n"
    p = write(
        tmp_path,
        HEADER
        + "\n"
        + good
        + "1625090400000,2021-06-30 22:00:00,BTC/USDT,1,2\n"
        + good.replace("23:00:00", "21:00:00").replace("1625094000000", "1625086800000")
        + "1625083200000,2021-06-30 20:00:00,BTC/USDT,1,2,0.5,x,10,15,3\n",
    )
    with pytest.raises(DataError, match=r":3: got .* expected 10 fields .* found 5"):
        read_bars(p)
    raw = read_bars(p, on_malformed="skip")
    assert raw.malformed_skipped == 2
    assert raw.rows_read == 4
    assert raw.frame.height == 2


def test_nan_in_optional_column_is_null_but_required_is_error(tmp_path: Path) -> None:
    p = write(
        tmp_path, HEADER + "\n1625094000000,2021-06-30 23:00:00,BTC/USDT,1,2,0.5,1.5,10,nan,3\n"
    )
    assert read_bars(p).frame["quote_volume"][0] is None
    p = write(
        tmp_path, HEADER + "\n1625094000000,2021-06-30 23:00:00,BTC/USDT,1,2,0.5,1.5,nan,1,3\n"
    )
    with pytest.raises(DataError, match="column 'volume'"):
        read_bars(p)


def test_generic_csv_with_mapping_and_seconds(tmp_path: Path) -> None:
    p = write(
        tmp_path, "time;o;h;l;c;vol\n1609459200;1;2;0.5;1.5;3\n1609462800;1.5;2;1;1.8;4\n", "g.txt"
    )
    raw = read_generic_csv(
        p,
        columns={
            "timestamp": "time",
            "open": "o",
            "high": "h",
            "low": "l",
            "close": "c",
            "volume": "vol",
        },
        timestamp_unit="s",
        symbol="sol-usdt",
        sep=";",
    )
    f = raw.frame
    assert f["symbol"].to_list() == ["SOL/USDT"] * 2
    assert f["timestamp"].to_list() == [
        datetime(2021, 1, 1, tzinfo=UTC),
        datetime(2021, 1, 1, 1, tzinfo=UTC),
    ]
    assert f["close"].to_list() == [1.5, 1.8]
    assert f["quote_volume"].null_count() == 2


def test_generic_csv_iso_and_bad_timestamp(tmp_path: Path) -> None:
    p = write(tmp_path, "timestamp,open,high,low,close,volume\n2021-01-01T00:00:00,1,2,0.5,1.5,3\n")
    raw = read_generic_csv(p, timestamp_unit="iso", symbol="X/Y")
    assert raw.frame["timestamp"][0] == datetime(2021, 1, 1, tzinfo=UTC)
    p = write(tmp_path, "timestamp,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match=r":2: column 'timestamp': got 'yesterday'"):
        read_generic_csv(p, timestamp_unit="ms", symbol="X/Y")
    with pytest.raises(DataError, match="a column for 'high'"):
        read_generic_csv(write(tmp_path, "timestamp,open\n1,2\n"), symbol="X/Y")


def test_parquet_round_trip_and_bad_value(tmp_path: Path) -> None:
    bars = make_bars(n=5)
    p = tmp_path / "b.parquet"
    bars.write_parquet(p)
    raw = read_parquet_bars(p)
    assert raw.frame.drop("_line", "_volume_decimals").equals(bars)
    bars.with_columns(
        pl.when(pl.int_range(5) == 3).then(None).otherwise(pl.col("close")).alias("close")
    ).write_parquet(p)
    with pytest.raises(DataError, match=r":4: column 'close'"):
        read_parquet_bars(p)
