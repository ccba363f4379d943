"""The live bar feed against a loopback Binance: it waits for each bar to close (its end
plus the grace, by the exchange's clock), fetches it through the download code into the
store, never keeps the open candle, and the observation it gives the policy is the
offline pipeline's, bit for bit (on the same bars, and on the full history for
``cappuccino14``, whose indicators forget their start within the window)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from cappuccino.data.download import make_exchange
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import build_market_arrays, observation_rows
from cappuccino.features.scaling import Scaler
from cappuccino.live.feed import LiveFeed
from cappuccino.live.runner import PaperRunner
from cappuccino.live.sim import SimBroker
from cappuccino.live.state import SessionState
from cappuccino.market import MarketRules, ObservationSpec
from cappuccino.policies import benchmark_policy

from .fake_binance import FakeBinanceTrading

pytestmark = pytest.mark.network_loopback
TF = Timeframe.parse("1h")
SYMBOLS = ("BTC/USDT", "ETH/USDT")
CUT = datetime(2021, 6, 20, tzinfo=UTC)  # the store's last bar before the session


@pytest.fixture(scope="module")
def full() -> pl.DataFrame:
    import tempfile

    from cappuccino.data.importing import import_files
    from cappuccino.data.sample import sample_path

    with tempfile.TemporaryDirectory() as d:
        st = ParquetStore(Path(d))
        import_files([sample_path()], st)
        return st.read_universe(TF, list(SYMBOLS))


def _candles(frame: pl.DataFrame, symbol: str) -> list[list[Any]]:
    f = frame.filter(pl.col("symbol") == symbol).sort("timestamp")
    ms = f["timestamp"].dt.epoch("ms").to_list()
    return [[t, o, h, lo, c, v] for t, o, h, lo, c, v in zip(
        ms, f["open"], f["high"], f["low"], f["close"], f["volume"], strict=True)]  # fmt: skip


@pytest.fixture
def venue(full: pl.DataFrame, tmp_path: Path) -> Any:
    store = ParquetStore(tmp_path / "store")
    store.upsert(full.filter(pl.col("timestamp") <= CUT), TF)
    now = int((CUT + timedelta(minutes=90)).timestamp() * 1000)  # 01:00's bar still open
    fake = FakeBinanceTrading([], now)
    fake.candles_by_symbol = {s.replace("/", ""): _candles(full, s) for s in SYMBOLS}
    with fake:
        yield fake, store


def _feed(fake: Any, store: ParquetStore, seen: list[int], **kw: Any) -> LiveFeed:
    def sleep(seconds: float) -> None:  # the exchange's clock moves while we wait
        fake.now_ms += int(seconds * 1000)
        seen.append(fake.now_ms)

    ex = make_exchange("binance", base_url=fake.url)
    return LiveFeed(store=store.root, exchange=ex, exchange_id="binance", symbols=SYMBOLS,
                    timeframe=TF, feature_set="cappuccino14", grace_s=10.0, sleep=sleep,
                    **{"history_bars": 1000, **kw})  # fmt: skip


def test_each_bar_after_its_close_plus_grace_never_the_open_candle(venue: Any) -> None:
    fake, store = venue
    seen: list[int] = []
    beats: list[int] = []
    feed = _feed(fake, store, seen)
    got = []
    it = feed.bars(None, heartbeat=lambda: beats.append(fake.now_ms))
    for cb in it:
        close_ms = int((cb.bar + timedelta(hours=1)).timestamp() * 1000)
        assert fake.now_ms >= close_ms + 10_000  # fetched only after its end plus the grace
        # the store gets a bar once its orders are out (off the critical path), never the
        # candle still forming
        last = store.last_timestamp("BTC/USDT", TF)
        assert last == (got[-1].bar if got else CUT)
        got.append(cb)
        if len(got) == 3:
            break
    it.close()
    assert store.last_timestamp("BTC/USDT", TF) == got[-1].bar
    assert store.last_timestamp("ETH/USDT", TF) == got[-1].bar
    assert [c.bar for c in got] == [CUT + timedelta(hours=h) for h in range(3)]
    assert beats and all(b2 - b1 <= 30_000 for b1, b2 in itertools.pairwise(seen))
    assert all(c.t == c.data.n_bars - 1 for c in got)


def test_the_observation_is_the_offline_pipelines_bit_for_bit(venue: Any,
                                                               full: pl.DataFrame) -> None:  # fmt: skip
    fake, store = venue
    feed = _feed(fake, store, [])
    cb = next(iter(feed.bars(None)))
    # the offline pipeline on the same bars
    window = full.filter(pl.col("timestamp").is_between(cb.bar - timedelta(hours=999), cb.bar))
    offline = build_market_arrays(window, "cappuccino14", TF)
    np.testing.assert_array_equal(cb.data.features, offline.features)
    np.testing.assert_array_equal(cb.data.timestamps, offline.timestamps)
    # ... and on the whole history: cappuccino14's indicators forget their start
    whole = build_market_arrays(full, "cappuccino14", TF)
    i = whole.index_of(cb.bar, default=0)
    scaler = Scaler.fit(whole.features)
    spec = ObservationSpec(n_assets=2, n_features=len(whole.feature_names), lookback=10)
    head = torch.zeros((1, 3))
    live_obs = spec.build(observation_rows(cb.data, scaler, 10.0), torch.tensor([cb.t]), head)
    full_obs = spec.build(observation_rows(whole, scaler, 10.0), torch.tensor([i]), head)
    assert torch.equal(live_obs, full_obs)


def test_a_dry_run_trades_live_bars_through_the_simulated_broker(venue: Any,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    fake, store = venue
    rules = MarketRules(initial_cash=10_000.0)
    broker = SimBroker(SYMBOLS, rules, book=tmp_path / "d.sim.jsonl")
    state = SessionState(tmp_path / "d.db", "dry_run")
    feed = _feed(fake, store, [])
    runner = PaperRunner(state=state, broker=broker, feed=feed,
                         policy=benchmark_policy("equal_weight", SYMBOLS), policy_name="equal_weight",
                         symbols=SYMBOLS, timeframe="1h", rules=rules, max_bars=3)  # fmt: skip
    summary = runner.run()
    assert summary.bars_processed == summary.decisions == 3
    fills = state.fills()
    # the first decision (bar 00:00) fills at the open of bar 01:00, as in the backtest
    first = min(f.at for f in fills)
    assert first == CUT + timedelta(hours=1)
    opens = store.read_universe(TF, list(SYMBOLS)).filter(pl.col("timestamp") == first)
    for f in (x for x in fills if x.at == first):
        want = opens.filter(pl.col("symbol") == f.symbol)["open"][0]
        assert f.price == pytest.approx(want * (1 + rules.slippage_rate), rel=1e-12)
    assert state.run().end_reason == "--max-bars 3 reached"  # type: ignore[union-attr]
