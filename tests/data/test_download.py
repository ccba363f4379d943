"""ccxt download against a loopback server speaking Binance's kline API (real ccxt code path)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from cappuccino.data.download import download_ohlcv, make_exchange
from cappuccino.data.readers import read_bars
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.data.validate import clean_bars
from tests.conftest import shared_file
from tests.data.exchange_server import HOUR_MS, FakeBinance

pytestmark = pytest.mark.network_loopback
H1 = Timeframe.parse("1h")


@pytest.fixture(scope="module")
def btc_candles() -> list[list[object]]:
    """300 real BTC/USDT hours from 2021-06 as kline rows (strings, as Binance sends them)."""
    clean = clean_bars([read_bars(shared_file("BTCUSDT"))]).frame
    part = clean.filter(pl.col("timestamp") >= datetime(2021, 6, 18, tzinfo=UTC)).head(300)
    return [
        [
            int(r["timestamp"].timestamp() * 1000),
            *(repr(r[c]) for c in ("open", "high", "low", "close", "volume")),
        ]
        for r in part.iter_rows(named=True)
    ]


def _download(server: FakeBinance, store: ParquetStore, **kw: object) -> list:  # type: ignore[type-arg]
    return download_ohlcv(
        store,
        exchange_id="binance",
        symbols=["BTC/USDT"],
        timeframe=H1,
        base_url=server.url,
        page_limit=100,
        sleep=lambda s: None,
        **kw,
    )  # type: ignore[arg-type]


def test_download_pages_drops_open_candle_and_matches_source(tmp_path, btc_candles) -> None:
    first = btc_candles[0][0]
    now = first + 250 * HOUR_MS + 20 * 60_000  # 20 minutes into candle #250
    store = ParquetStore(tmp_path)
    with FakeBinance(btc_candles, now_ms=now) as server:
        (res,) = _download(server, store, since=datetime.fromtimestamp(first / 1000, UTC))
    assert res.rows_new == 250  # candles 0..249 closed; #250 still open
    assert res.open_candle_dropped == 1
    assert res.pages == 3  # 100 + 100 + 51 (50 closed + the open one)
    got = store.read_symbol("BTC/USDT", H1)
    assert got.height == 250
    assert int(got["timestamp"].max().timestamp() * 1000) == first + 249 * HOUR_MS
    expected_close = [float(c[4]) for c in btc_candles[:250]]
    assert got["close"].to_list() == expected_close


def test_download_resumes_from_last_stored_bar(tmp_path, btc_candles) -> None:
    first = btc_candles[0][0]
    store = ParquetStore(tmp_path)
    with FakeBinance(btc_candles, now_ms=first + 120 * HOUR_MS) as server:
        _download(server, store, since=datetime.fromtimestamp(first / 1000, UTC))
    with FakeBinance(btc_candles, now_ms=first + 280 * HOUR_MS + 1) as server:
        (res,) = _download(server, store)  # no since: resumes
        assert int(server.kline_requests[0]["startTime"]) == first + 120 * HOUR_MS
    assert res.rows_new == 160
    assert store.read_symbol("BTC/USDT", H1).height == 280


def test_interrupted_download_keeps_pages_and_resumes(tmp_path, btc_candles) -> None:
    import ccxt

    first = btc_candles[0][0]
    store = ParquetStore(tmp_path)
    with FakeBinance(btc_candles, now_ms=first + 299 * HOUR_MS + 1) as server:
        server.die_after_pages = 2
        with pytest.raises(ccxt.ExchangeNotAvailable):
            _download(server, store, since=datetime.fromtimestamp(first / 1000, UTC), max_retries=1)
    assert store.read_symbol("BTC/USDT", H1).height == 200  # two full pages were stored
    with FakeBinance(btc_candles, now_ms=first + 299 * HOUR_MS + 1) as server:
        (res,) = _download(server, store)
    assert res.rows_new == 99
    assert store.read_symbol("BTC/USDT", H1)["timestamp"].is_unique().all()


def test_rate_limit_is_retried_and_counted(tmp_path, btc_candles) -> None:
    first = btc_candles[0][0]
    store = ParquetStore(tmp_path)
    waits: list[float] = []
    with FakeBinance(btc_candles, now_ms=first + 50 * HOUR_MS) as server:
        server.fail_next_klines = 2
        (res,) = download_ohlcv(
            store,
            symbols=["BTC/USDT"],
            timeframe=H1,
            base_url=server.url,
            since=datetime.fromtimestamp(first / 1000, UTC),
            sleep=waits.append,
        )
    assert res.retries == 2
    assert waits == [1.0, 2.0]  # exponential backoff
    assert res.rows_new == 50


def test_first_download_needs_since_and_unknown_symbol_is_clear(tmp_path, btc_candles) -> None:
    with FakeBinance(btc_candles, now_ms=btc_candles[10][0]) as server:
        with pytest.raises(ValueError, match="pass since"):
            _download(server, ParquetStore(tmp_path))
        with pytest.raises(ValueError, match="not listed"):
            download_ohlcv(
                ParquetStore(tmp_path),
                symbols=["DOGE/USDT"],
                timeframe=H1,
                base_url=server.url,
                since=datetime(2021, 1, 1, tzinfo=UTC),
            )


def test_base_url_rewrites_every_api_host() -> None:
    ex = make_exchange("binance", base_url="http://127.0.0.1:9")

    def urls(v: object) -> list[str]:
        if isinstance(v, dict):
            return [u for x in v.values() for u in urls(x)]
        return [v] if isinstance(v, str) else []

    found = urls(ex.urls["api"])
    assert found
    assert all(u.startswith("http://127.0.0.1:9/") for u in found)


def test_cli_download_json_is_one_document_through_retries_at_debug(tmp_path, btc_candles) -> None:
    import json
    import os
    import subprocess
    import sys

    first = btc_candles[0][0]
    with FakeBinance(btc_candles, now_ms=first + 30 * HOUR_MS) as server:
        server.fail_next_klines = 1  # one 429: a retry, logged as a warning
        cmd = [sys.executable, "-m", "cappuccino.cli.main", "--log-level", "DEBUG", "data",
               "download", "-s", "BTC/USDT", "--store", str(tmp_path / "s"), "--since",
               datetime.fromtimestamp(first / 1000, UTC).isoformat(), "--base-url", server.url,
               "--json"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["symbols"]  # json.loads refuses anything around it
    assert row["retries"] == 1 and row["rows_new"] == 30
    assert "WARNING cappuccino.data.download: binance: DDoSProtection; retry 1/5" in done.stderr
