"""One conformance suite for every broker adapter: the simulated broker, Alpaca (alpaca-py
against a loopback fake of its REST API) and ccxt (against a loopback fake of Binance's).

Each case states what the runner relies on: a duplicate client order id is refused and the
venue holds one order; a partial fill survives a cancel; a cancel that races a fill reports
the fill; a look-up that first misses finds the order later; 429, 5xx, a 504 after the
venue accepted, a dropped connection and a fill reported twice never create a second
order or a second recorded fill. The fault cases need a venue that can fail, so they run
on the fakes (the simulated broker's own faults are the runner's chaos replay)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cappuccino.live.broker import (
    BrokerOrder,
    DuplicateOrder,
    OrderRequest,
    SubmitUncertain,
)
from cappuccino.live.sim import SimBroker
from cappuccino.live.state import FillRow, SessionState, client_order_id
from cappuccino.live.symbols import SymbolMap
from cappuccino.market import MarketRules

from .fake_alpaca import FakeAlpaca
from .fake_binance import FakeBinanceTrading

pytestmark = pytest.mark.network_loopback
SYMBOLS = ("BTC/USDT", "ETH/USDT")
BAR = datetime(2024, 1, 1, tzinfo=UTC)


class Venue:
    """A broker plus the handles a test needs on the venue behind it."""

    name: str
    broker: Any

    def settle(self) -> None:
        """Let the venue execute what it accepted (the sim: the next bar's open)."""

    def n_orders(self, cid: str) -> int:
        raise NotImplementedError

    def partial_next(self) -> None:
        raise NotImplementedError

    def fill_later(self) -> None:
        raise NotImplementedError

    def fill_now(self) -> None:
        raise NotImplementedError

    def fault(self, route: str, kind: str) -> None:
        raise NotImplementedError


class SimVenue(Venue):
    name = "sim"

    def __init__(self, tmp: Path) -> None:
        self.broker = SimBroker(SYMBOLS, MarketRules(initial_cash=100_000.0,
                                                     min_order_notional=0.0),
                                book=tmp / "s.sim.jsonl")  # fmt: skip
        self.bar = BAR
        self.broker.on_bar(self.bar, np.array([30_000.0, 2_000.0]), np.array([30_000.0, 2_000.0]))

    def settle(self) -> None:
        self.bar += timedelta(hours=1)
        px = np.array([30_000.0, 2_000.0])
        self.broker.on_bar(self.bar, px, px)

    def n_orders(self, cid: str) -> int:
        return int(cid in self.broker.orders)

    def partial_next(self) -> None:
        self._partial = True

    def fill_later(self) -> None:
        pass  # the sim always fills at the next open

    def fill_now(self) -> None:
        self.settle()


class AlpacaVenue(Venue):
    name = "alpaca"

    def __init__(self, fake: FakeAlpaca, monkeypatch: pytest.MonkeyPatch) -> None:
        from cappuccino.live.alpaca import AlpacaBroker

        monkeypatch.setenv("APCA_API_KEY_ID", "key-id")
        monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
        self.fake = fake
        smap = SymbolMap.parse(SYMBOLS, ["BTC/USDT=BTC/USD,ETH/USDT=ETH/USD"])
        self.broker = AlpacaBroker.from_env(smap, url=fake.url)
        self.broker.client._retry_wait = 0

    def n_orders(self, cid: str) -> int:
        return self.fake.n_orders(cid)

    def partial_next(self) -> None:
        self.fake.fill = "partial"

    def fill_later(self) -> None:
        self.fake.fill = "later"

    def fill_now(self) -> None:
        self.fake.fill_open()

    def fault(self, route: str, kind: str) -> None:
        self.fake.faults.append((route, kind))


class CcxtVenue(AlpacaVenue):
    name = "ccxt"

    def __init__(self, fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        from cappuccino.live.exchange import CcxtBroker

        monkeypatch.setenv("CAPPUCCINO_BINANCE_API_KEY", "key-id")
        monkeypatch.setenv("CAPPUCCINO_BINANCE_SECRET", "secret")
        self.fake = fake
        self.broker = CcxtBroker.from_env("binance", SymbolMap.parse(SYMBOLS), url=fake.url)
        self.broker.backoff_s = 0.0


@contextmanager
def _venue(name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    if name == "sim":
        yield SimVenue(tmp)
        return
    if name == "ccxt":
        with FakeBinanceTrading(cash=100_000.0) as fake:
            yield CcxtVenue(fake, monkeypatch)
        return
    with FakeAlpaca(cash=100_000.0) as fake:
        yield AlpacaVenue(fake, monkeypatch)


@pytest.fixture(params=["sim", "alpaca", "ccxt"])
def venue(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:  # fmt: skip
    with _venue(request.param, tmp_path, monkeypatch) as v:
        yield v


@pytest.fixture(params=["alpaca", "ccxt"])
def failing(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:  # fmt: skip
    """The venues that can fail on demand (the fakes); the simulated broker's faults are the
    runner's chaos replay."""
    with _venue(request.param, tmp_path, monkeypatch) as v:
        yield v


def _cid(n: int) -> str:
    return client_order_id("run", BAR, "BTC/USDT", n)


def _buy(cid: str, qty: float = 0.1) -> OrderRequest:
    return OrderRequest(cid, "BTC/USDT", "buy", qty)


def _settled(venue: Venue, cid: str) -> BrokerOrder:
    venue.settle()
    got = venue.broker.order(cid)
    assert got is not None
    return got


def test_submit_then_a_duplicate_client_order_id(venue: Venue) -> None:
    ack = venue.broker.submit(_buy(_cid(1)))
    assert ack.client_order_id == _cid(1) and ack.status in ("ACCEPTED", "FILLED")
    with pytest.raises(DuplicateOrder):
        venue.broker.submit(_buy(_cid(1)))
    assert venue.n_orders(_cid(1)) == 1
    done = _settled(venue, _cid(1))
    assert done.status == "FILLED" and done.filled_qty == pytest.approx(0.1)
    assert venue.broker.positions()["BTC/USDT"].qty == pytest.approx(0.1)
    trades = venue.broker.trades_since(BAR - timedelta(days=1))
    assert [t.client_order_id for t in trades] == [_cid(1)]


def test_a_partial_fill_survives_the_cancel(venue: Venue) -> None:
    if isinstance(venue, SimVenue):
        # the sim's partial fill: buys beyond the cash are cut pro rata (an IOC outcome)
        venue.broker.submit(_buy(_cid(2), qty=5.0))  # 150,000 > 100,000 cash
        got = _settled(venue, _cid(2))
    else:
        venue.partial_next()
        venue.broker.submit(_buy(_cid(2), qty=1.0))
        got = venue.broker.cancel(_cid(2))
        assert got is not None
    assert got.status == "CANCELED" and got.final
    assert 0 < got.filled_qty < got.qty
    trades = [t for t in venue.broker.trades_since(BAR - timedelta(days=1))
              if t.client_order_id == _cid(2)]  # fmt: skip
    assert sum(t.qty for t in trades) == pytest.approx(got.filled_qty)
    assert venue.broker.positions()["BTC/USDT"].qty == pytest.approx(got.filled_qty)


def test_a_cancel_that_races_a_fill_reports_the_fill(venue: Venue) -> None:
    venue.fill_later()
    venue.broker.submit(_buy(_cid(3)))
    venue.fill_now()  # the venue executes before the cancel arrives
    got = venue.broker.cancel(_cid(3))
    assert got is not None and got.status == "FILLED" and got.filled_qty == pytest.approx(0.1)


def test_a_cancel_before_the_fill_is_final_with_nothing_filled(venue: Venue) -> None:
    venue.fill_later()
    venue.broker.submit(_buy(_cid(4)))
    got = venue.broker.cancel(_cid(4))
    assert got is not None and got.status == "CANCELED" and got.filled_qty == 0.0
    assert venue.broker.open_orders() == []


def test_an_unknown_order_is_none_not_cancelled(venue: Venue) -> None:
    assert venue.broker.order(_cid(99)) is None
    assert venue.broker.cancel(_cid(99)) is None


def test_a_lookup_that_misses_then_finds(failing: Venue) -> None:
    failing.broker.submit(_buy(_cid(5)))
    failing.fault("lookup", "404")
    assert failing.broker.order(_cid(5)) is None  # not found yet: the runner waits, never
    got = failing.broker.order(_cid(5))  # treats it as cancelled
    assert got is not None and got.status == "FILLED"


def test_a_429_is_retried_by_the_client_into_one_order(failing: Venue) -> None:
    failing.fault("submit", "429")
    ack = failing.broker.submit(_buy(_cid(6)))
    assert ack.status == "FILLED" and failing.n_orders(_cid(6)) == 1


@pytest.mark.parametrize("kind", ["500", "503"])
def test_a_5xx_before_processing_is_uncertain_and_places_nothing(failing: Venue, kind: str) -> None:
    failing.fault("submit", kind)
    with pytest.raises(SubmitUncertain):
        failing.broker.submit(_buy(_cid(7)))
    assert failing.broker.order(_cid(7)) is None and failing.n_orders(_cid(7)) == 0


@pytest.mark.parametrize("kind", ["504_after_accept", "500_after_accept", "drop_after_accept"])
def test_an_accepted_submit_that_fails_is_found_by_its_id(failing: Venue, kind: str) -> None:
    failing.fault("submit", kind)
    with pytest.raises((SubmitUncertain, DuplicateOrder)):
        # a 504 is retried by alpaca-py itself: the retry meets the duplicate id
        failing.broker.submit(_buy(_cid(8)))
    got = failing.broker.order(_cid(8))
    assert got is not None and got.status == "FILLED"
    assert failing.n_orders(_cid(8)) == 1


def test_a_fill_reported_twice_is_recorded_once(failing: Venue, tmp_path: Path) -> None:
    st = SessionState(tmp_path / "s.db", failing.broker.mode)
    st.start(run_id="run", broker=failing.name, policy="p", symbols=list(SYMBOLS),
             timeframe="1h", now=BAR)  # fmt: skip
    _, intents = st.record_plan(BAR, {}, 1.0, [("BTC/USDT", 9, "buy", 0.1)], BAR)
    failing.broker.submit(_buy(intents[0].client_order_id))
    failing.fault("activities", "dup_fill")
    trades = failing.broker.trades_since(BAR - timedelta(days=1))
    assert len(trades) == 2 and trades[0].trade_id == trades[1].trade_id
    rows = [FillRow(trade_id=t.trade_id, client_order_id=t.client_order_id, symbol=t.symbol,
                    side=t.side, qty=t.qty, price=t.price, fee=t.fee, at=t.at)
            for t in trades]  # fmt: skip
    assert st.record_fills(rows[:1]) == 1 and st.record_fills(rows[1:]) == 0
    assert len(st.fills()) == 1
