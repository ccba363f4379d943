"""Data that cannot be corrupted: impossible bars, bounded gap fill, interval mismatches, and
damaged partitions named on every read, verified, and repaired."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.data.errors import DataError
from cappuccino.data.readers import read_bars
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.data.validate import clean_bars
from tests.conftest import make_bars

HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"
T0 = 1609459200  # 2021-01-01 00:00 UTC
H = Timeframe.parse("1h")
runner = CliRunner()


def bar(t: int, o: float = 1, h: float = 2, lo: float = 0.5, c: float = 1.5, v: float = 10) -> str:
    date = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{t * 1000},{date},BTC/USDT,{o},{h},{lo},{c},{v},15,3"


def write(tmp_path: Path, rows: list[str], name: str = "x.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return p


def hourly(n: int, start: int = T0) -> list[str]:
    return [bar(start + 3600 * i) for i in range(n)]


NOW = datetime(2021, 1, 2, tzinfo=UTC)
IMPOSSIBLE = [
    ("nonpositive_prices", bar(T0 + 3 * 3600, lo=0), "expected prices > 0"),
    ("high_below_low", bar(T0 + 3 * 3600, o=1, h=0.9, lo=1.0, c=0.95), "expected low <= high"),
    ("high_below_open_close", bar(T0 + 3 * 3600, h=1.2), "expected high >= open and close"),
    ("low_above_open_close", bar(T0 + 3 * 3600, lo=1.1), "expected low <= open and close"),
    ("negative_volume", bar(T0 + 3 * 3600, v=-1), "expected volume >= 0"),
    ("timestamp_before_earliest", bar(0), "expected a timestamp on or after 2009-01-01"),
    ("timestamp_in_future", bar(int(NOW.timestamp()) + 2 * 3600), "one bar from now"),
]


@pytest.mark.parametrize(("reason", "line", "expected"), IMPOSSIBLE, ids=[i[0] for i in IMPOSSIBLE])
def test_each_impossible_bar_is_an_error_naming_file_line_and_value(
    tmp_path: Path, reason: str, line: str, expected: str
) -> None:
    rows = [*hourly(3), line, *hourly(3, T0 + 4 * 3600)]
    raw = read_bars(write(tmp_path, rows))
    with pytest.raises(DataError, match=r"x.csv:5: got \{'timestamp'") as err:
        clean_bars([raw], now=NOW)
    assert expected in str(err.value) and "1 impossible bars" in str(err.value)
    c = clean_bars([raw], on_bad_ohlc="drop", now=NOW)
    r = c.reports["BTC/USDT"]
    assert getattr(r, reason) == 1 and r.impossible_dropped == 1 and c.frame.height == 6


def test_zero_volume_is_legal_and_counted(tmp_path: Path) -> None:
    rows = [*hourly(2), bar(T0 + 7200, v=0)]
    c = clean_bars([read_bars(write(tmp_path, rows))], now=NOW)
    assert c.frame.height == 3 and c.reports["BTC/USDT"].zero_volume_bars == 1


def test_one_unix_zero_row_cannot_fabricate_half_a_million_bars(tmp_path: Path) -> None:
    raw = read_bars(write(tmp_path, [bar(0), *hourly(5)]))
    with pytest.raises(DataError, match="x.csv:2: .*on or after 2009-01-01"):
        clean_bars([raw], on_gap="fill")  # before the fix: 443,435 bars, exit 0
    c = clean_bars([raw], on_gap="fill", on_bad_ohlc="drop")
    assert c.frame.height == 5 and c.reports["BTC/USDT"].timestamp_before_earliest == 1


def test_gap_fill_is_bounded_and_the_long_gap_is_reported(tmp_path: Path) -> None:
    rows = hourly(3) + hourly(3, T0 + 5 * 3600) + hourly(3, T0 + 38 * 3600)  # gaps: 2 and 30 bars
    raw = read_bars(write(tmp_path, rows))
    c = clean_bars([raw], on_gap="fill")
    r = c.reports["BTC/USDT"]
    assert (r.gaps, r.missing_bars, r.filled_bars) == (2, 32, 2)
    assert (r.unfilled_gaps, r.unfilled_bars) == (1, 30)
    assert c.frame.height == 11  # 9 real + 2 filled; the 30-bar gap stays a gap
    assert clean_bars([raw], on_gap="fill", max_fill_bars=30).frame.height == 41
    with pytest.raises(DataError, match="2 missing bars before this one; 2 gaps in all"):
        clean_bars([raw], on_gap="error", timeframe=H)


def test_the_real_ltc_gap_stays_a_gap_under_fill() -> None:
    ltc = Path(__file__).parents[2].parent / "shared/data/binance_1h/Binance_LTCUSDT_1h.csv"
    c = clean_bars([read_bars(ltc)], on_gap="fill")
    r = c.reports["LTC/USDT"]
    assert r.longest_gap_bars == 1951 and r.unfilled_bars >= 1951
    assert r.filled_bars == r.missing_bars - r.unfilled_bars
    assert c.frame.height == r.rows_valid


def test_a_daily_file_imported_as_hourly_is_an_error(tmp_path: Path) -> None:
    raw = read_bars(write(tmp_path, [bar(T0 + 86400 * i) for i in range(10)]))
    with pytest.raises(DataError, match=r"x.csv: column 'timestamp': got 'BTC/USDT steps of 1d'"):
        clean_bars([raw], timeframe=H)
    assert clean_bars([raw]).timeframe == Timeframe.parse("1d")
    kept = clean_bars([raw], timeframe=H, on_interval_mismatch="keep")
    assert kept.reports["BTC/USDT"].interval_mismatch_steps == 9


def test_daily_rows_inside_an_hourly_file_are_a_second_interval(tmp_path: Path) -> None:
    daily = [bar(T0 - 86400 * k) for k in range(5, 0, -1)]  # 5 daily rows, then hourly
    raw = read_bars(write(tmp_path, daily + hourly(48)))
    with pytest.raises(DataError, match=r"x.csv:3: column 'timestamp'.*consecutive steps of 1d"):
        clean_bars([raw])
    kept = clean_bars([raw], on_interval_mismatch="keep")
    assert kept.timeframe == H and kept.reports["BTC/USDT"].interval_mismatch_steps == 5


def test_symbols_with_different_intervals_in_one_import_are_an_error(tmp_path: Path) -> None:
    a = read_bars(write(tmp_path, hourly(10), "a.csv"))
    b_rows = [r.replace("BTC/USDT", "ETH/USDT") for r in (bar(T0 + 86400 * i) for i in range(10))]
    b_file = write(tmp_path, b_rows, "b.csv")
    b_file.write_text(b_file.read_text().replace("Volume BTC", "Volume ETH"))
    b = read_bars(b_file)
    with pytest.raises(DataError, match=r"BTC/USDT 1h .*ETH/USDT 1d .*one interval"):
        clean_bars([a, b])


def test_the_shared_files_pass_the_default_checks() -> None:
    # the real defects (gaps, duplicates, zero volume) are legal; nothing is impossible
    data = Path(__file__).parents[2].parent / "shared/data/binance_1h"
    for name in ("Binance_BTCUSDT_1h.csv", "Binance_NEOUSDT_1h.csv", "Binance_ICPUSDT_1h.csv"):
        r = next(iter(clean_bars([read_bars(data / name)]).reports.values()))
        assert r.impossible_dropped == 0 and r.interval_mismatch_steps == 0


# --- damaged partitions --------------------------------------------------------------


def _store_with(tmp_path: Path) -> tuple[ParquetStore, Path]:
    store = ParquetStore(tmp_path / "store")
    store.upsert(pl.concat([make_bars("AAA/USDT", 50), make_bars("BBB/USDT", 50, seed=1)]), H)
    return store, store.path("BBB/USDT", H)


DAMAGE = {
    "corrupt": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "wrong_schema": lambda p: pl.DataFrame({"time": [1], "price": [2.0]}).write_parquet(p),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_partition_is_one_error_naming_it_on_every_read(
    tmp_path: Path, damage: str
) -> None:
    store, bad = _store_with(tmp_path)
    DAMAGE[damage](bad)
    reads = {
        "read": lambda: store.read(H),
        "read_symbol": lambda: store.read_symbol("BBB/USDT", H),
        "last_timestamp": lambda: store.last_timestamp("BBB/USDT", H),
        "info": store.info,
        "upsert": lambda: store.upsert(make_bars("BBB/USDT", 60, seed=1), H),
    }
    for name, read in reads.items():
        with pytest.raises(DataError, match=rf"^{bad}: .*data verify") as err:
            read()
        assert "\n" not in str(err.value), name
    assert store.read(H, ["AAA/USDT"]).height == 50  # the healthy partition still reads

    checks = {c.symbol: c for c in store.verify()}
    assert checks["AAA/USDT"].ok and not checks["BBB/USDT"].ok
    res = runner.invoke(app, ["data", "verify", "--store", str(store.root), "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["broken"] == 1 and "1 of 2 partitions broken" in res.stderr
    for cmd in (["data", "info"], ["features", "build", "--feature-set", "cappuccino14",
                                    "--out", str(tmp_path / "f.parquet")]):  # fmt: skip
        res = runner.invoke(app, [*cmd, "--store", str(store.root)])
        assert res.exit_code == 2 and str(bad) in res.stderr, res.output
        assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1

    # --repair sets the broken file aside (nothing is lost) and rewrites it from the import
    before = bad.read_bytes()
    (up,) = store.upsert(make_bars("BBB/USDT", 60, seed=1), H, repair=True)
    assert up.repaired_from is not None and Path(up.repaired_from).read_bytes() == before
    assert up.rows_stored == 60 and store.read_symbol("BBB/USDT", H).height == 60
    assert all(c.ok for c in store.verify())


def test_verify_finds_rows_a_reader_would_accept_but_are_wrong(tmp_path: Path) -> None:
    store, bad = _store_with(tmp_path)
    frame = pl.read_parquet(bad)
    frame.reverse().write_parquet(bad)  # readable, right schema, but time runs backwards
    (check,) = [c for c in store.verify() if c.symbol == "BBB/USDT"]
    assert not check.ok and "49 timestamps not strictly increasing" in check.problem
    assert runner.invoke(app, ["data", "verify", "--store", str(store.root)]).exit_code == 2


def test_import_with_repair_from_the_cli(tmp_path: Path) -> None:
    f = write(tmp_path, hourly(30))
    store = tmp_path / "store"
    assert runner.invoke(app, ["data", "import", str(f), "--store", str(store)]).exit_code == 0
    part = ParquetStore(store).path("BTC/USDT", H)
    part.write_bytes(b"PAR1 not really")
    res = runner.invoke(app, ["data", "import", str(f), "--store", str(store)])
    assert res.exit_code == 2 and str(part) in res.stderr
    res = runner.invoke(app, ["data", "import", str(f), "--store", str(store), "--repair",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)["symbols"]
    assert row["repaired_from"] and row["rows_stored"] == 30
    assert runner.invoke(app, ["data", "verify", "--store", str(store)]).exit_code == 0


def test_the_import_table_shows_every_nonzero_count(tmp_path: Path) -> None:
    rows = [
        *hourly(3),
        bar(T0 + 3 * 3600, v=0),
        bar(T0 + 4 * 3600, h=1.2),
        *hourly(2, T0 + 9 * 3600),
    ]
    f = write(tmp_path, rows)
    res = runner.invoke(app, ["data", "import", str(f), "--store", str(tmp_path / "s"),
                              "--on-bad-ohlc", "drop", "--on-gap", "fill"],
                        env={"COLUMNS": "400"})  # fmt: skip
    assert res.exit_code == 0, res.output
    for column in ("zero_volume_bars", "high_below_open_close", "impossible_dropped",
                   "filled_bars"):  # fmt: skip
        assert column in res.stdout, column
    assert "negative_volume" not in res.stdout  # zero counts stay out of the table
