"""The simulated broker: orders fill through ``market`` exactly as the backtest fills them.

Orders submitted while bar ``t`` is the last closed bar fill at the **open of bar t + 1**,
when :meth:`SimBroker.on_bar` announces it, through :func:`cappuccino.market.execute` (sells
first, then buys; slippage and fees from the session's :class:`~cappuccino.market.MarketRules`).
The paper runner sizes its orders with :func:`cappuccino.market.plan_orders` at that same
price in a replay, so a replay session's fills, cash and equity are the backtest's.

If the buys of one bar cost more than the cash (orders sized at a close, filled at the next
open), every buy is scaled by one factor, as :func:`~cappuccino.market.rebalance` scales
them; such an order ends ``CANCELED`` with the filled part (an IOC order's outcome).

The book (cash, units, entry prices, orders, trades, the clock) lives in its own journal
next to the session's state (``--state X.db`` -> ``X.sim.jsonl``): one JSON line per change,
each written whole, so the simulated venue outlives a killed runner the way a real broker
does. It is flushed, not fsynced: it survives a crash of the process, not of the machine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cappuccino.live.broker import (
    Account,
    BrokerOrder,
    DuplicateOrder,
    OrderRejected,
    OrderRequest,
    Position,
    Trade,
)
from cappuccino.market import MarketRules, Portfolio, execute

log = logging.getLogger(__name__)

BOOK_FORMAT = "cappuccino.sim-book/1"


def book_path(state: Path) -> Path:
    """The simulated venue's book beside a state file."""
    state = Path(state)
    return state.with_name(state.stem + ".sim.jsonl")


class SimBroker:
    """A simulated venue for ``symbols`` under ``rules`` (its ``initial_cash`` is the
    account's starting cash). ``book``: where the venue keeps its book (None: in memory)."""

    name = "sim"
    mode = "dry_run"

    def __init__(
        self, symbols: tuple[str, ...], rules: MarketRules, *, book: Path | None = None
    ) -> None:
        self.symbols = tuple(symbols)
        self.rules = rules
        self.book = Path(book) if book is not None else None
        self._index = {s: i for i, s in enumerate(self.symbols)}
        n = len(self.symbols)
        self.cash = float(rules.initial_cash)
        self.units = [0.0] * n
        self.entry = [0.0] * n
        self.last_close: list[float] | None = None
        self.clock: datetime | None = None  # the open time of the last announced bar
        self.orders: dict[str, BrokerOrder] = {}
        self.pending: list[str] = []  # client order ids waiting for the next open
        self.trades: list[Trade] = []
        self._fh: Any = None
        if self.book is not None and self.book.is_file():
            self._load()

    # -- persistence: an append-only journal, one JSON line per change ---------------------
    def _write(self, **entry: Any) -> None:
        if self.book is None:
            return
        if self._fh is None:
            new = not self.book.exists()
            self._fh = open(self.book, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
            if new:
                head = {"k": "head", "format": BOOK_FORMAT, "symbols": list(self.symbols),
                        "rules": self.rules.model_dump(mode="json")}  # fmt: skip
                self._fh.write(json.dumps(head) + "\n")
        # one line per change, one write: a killed process leaves at most a torn last line,
        # which loading ignores (the change did not happen)
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()

    def _book_entry(self) -> dict[str, Any]:
        return {"cash": self.cash, "units": self.units, "entry": self.entry,
                "last_close": self.last_close, "pending": self.pending,
                "clock": self.clock.isoformat() if self.clock else None}  # fmt: skip

    def _load(self) -> None:
        assert self.book is not None
        try:
            raw = self.book.read_bytes()
        except OSError as exc:
            raise ValueError(f"{self.book}: unreadable simulated book ({exc})") from exc
        whole = raw[: raw.rfind(b"\n") + 1]
        if len(whole) < len(raw):  # a torn last line: that change never happened
            log.warning(
                "%s: dropping a torn last line (%d bytes)", self.book, len(raw) - len(whole)
            )
            with open(self.book, "r+b") as fh:
                fh.truncate(len(whole))
        entries = []
        for n, line in enumerate(whole.decode("utf-8").splitlines(), 1):
            try:
                entries.append(json.loads(line))
            except ValueError:
                raise ValueError(f"{self.book}:{n}: not a journal line") from None
        if not entries or entries[0].get("format") != BOOK_FORMAT:
            raise ValueError(f"{self.book}: not a simulated book ({BOOK_FORMAT})")
        head = entries[0]
        if tuple(head["symbols"]) != self.symbols:
            raise ValueError(f"{self.book}: symbols {head['symbols']}, expected "
                             f"{list(self.symbols)}")  # fmt: skip
        if head["rules"] != self.rules.model_dump(mode="json"):
            raise ValueError(f"{self.book}: kept under other market rules than this session's")
        for e in entries[1:]:
            for o in e.get("orders", []):
                self.orders[o["client_order_id"]] = BrokerOrder(**o)
            for t in e.get("trades", []):
                self.trades.append(Trade(**{**t, "at": datetime.fromisoformat(t["at"])}))
            if "book" in e:
                b = e["book"]
                self.cash, self.units, self.entry = b["cash"], b["units"], b["entry"]
                self.last_close, self.pending = b["last_close"], list(b["pending"])
                self.clock = datetime.fromisoformat(b["clock"]) if b["clock"] else None

    def _commit(self, orders: list[BrokerOrder], trades: list[Trade]) -> None:
        self._write(orders=[_row(o) for o in orders], trades=[_row(t) for t in trades],
                    book=self._book_entry())  # fmt: skip

    # -- the protocol ------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC)

    def account(self) -> Account:
        price = self.last_close or [0.0] * len(self.symbols)
        value = sum(u * p for u, p in zip(self.units, price, strict=True))
        return Account(cash=self.cash, equity=self.cash + value)

    def positions(self) -> dict[str, Position]:
        return {
            s: Position(symbol=s, qty=self.units[i], avg_entry_price=self.entry[i])
            for s, i in self._index.items()
            if self.units[i] > 0
        }

    def open_orders(self) -> list[BrokerOrder]:
        return [self.orders[c] for c in self.pending]

    def round_qty(self, symbol: str, qty: float) -> float:
        return qty

    def submit(self, order: OrderRequest) -> BrokerOrder:
        if order.client_order_id in self.orders:
            raise DuplicateOrder(f"client order id {order.client_order_id} already used")
        if order.symbol not in self._index:
            raise OrderRejected(f"symbol {order.symbol!r} is not traded here")
        if order.side not in ("buy", "sell") or not order.qty > 0:
            raise OrderRejected(f"side {order.side!r}, qty {order.qty!r}")
        ack = BrokerOrder(
            client_order_id=order.client_order_id,
            broker_order_id=f"sim-{len(self.orders) + 1}",
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            status="ACCEPTED",
        )
        self.orders[ack.client_order_id] = ack
        self.pending.append(ack.client_order_id)
        self._commit([ack], [])
        return ack

    def cancel(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        found = self.orders.get(client_order_id)
        if found is None:
            return None
        if client_order_id in self.pending:
            self.pending.remove(client_order_id)
            found = _replace(found, status="CANCELED")
            self.orders[client_order_id] = found
            self._commit([found], [])
        return found

    def order(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        return self.orders.get(client_order_id)

    def trades_since(self, since: datetime) -> list[Trade]:
        out = []
        for t in reversed(self.trades):  # time-ordered: scan back from the newest
            if t.at < since:
                break
            out.append(t)
        return out[::-1]

    def on_bar(
        self, bar: datetime, open: npt.NDArray[np.float64], close: npt.NDArray[np.float64]
    ) -> None:
        """Fill the pending orders at ``open`` (the open of ``bar``, a bar open time) and
        mark the book at ``close``; the clock moves to the bar's close."""
        if self.clock is not None and bar <= self.clock:
            return  # announced before (a resumed runner): filled then
        orders, trades = (self._fill(bar, np.asarray(open, dtype=np.float64))
                          if self.pending else ([], []))  # fmt: skip
        self.last_close = [float(x) for x in close]
        self.clock = bar
        self._commit(orders, trades)

    def _fill(
        self, bar: datetime, open_: npt.NDArray[np.float64]
    ) -> tuple[list[BrokerOrder], list[Trade]]:
        n = len(self.symbols)
        f64 = torch.float64
        sell, buy = np.zeros(n), np.zeros(n)
        for cid in self.pending:
            o = self.orders[cid]
            (sell if o.side == "sell" else buy)[self._index[o.symbol]] += o.qty
        held = np.asarray(self.units)
        sell_cut = np.minimum(sell, held)  # long-only: never sell more than held
        pf = Portfolio(
            cash=torch.tensor([self.cash], dtype=f64),
            units=torch.tensor([self.units], dtype=f64),
            entry_price=torch.tensor([self.entry], dtype=f64),
        )
        price = torch.as_tensor(open_, dtype=f64).unsqueeze(0)
        sell_t = torch.as_tensor(sell_cut, dtype=f64).unsqueeze(0)
        buy_t = torch.as_tensor(buy, dtype=f64).unsqueeze(0)
        # buys beyond the cash after the sells: scaled by one factor (IOC partial fills)
        rules = self.rules
        cash_after = pf.cash + (sell_t * (price * (1.0 - rules.slippage_rate))
                                * (1.0 - rules.sell_fee_rate)).sum(-1)  # fmt: skip
        cost = (buy_t * price * (1.0 + rules.slippage_rate) * (1.0 + rules.buy_fee_rate)).sum(-1)
        if float(cost[0]) > float(cash_after[0]) * (1.0 + 1e-12):
            buy_t = buy_t * (cash_after / cost).unsqueeze(-1)
        fill = execute(pf, sell_t, buy_t, price, rules)
        self.cash = float(fill.portfolio.cash[0])
        self.units = [float(x) for x in fill.portfolio.units[0]]
        self.entry = [float(x) for x in fill.portfolio.entry_price[0]]
        done = fill.sold[0] + fill.bought[0]
        want = torch.as_tensor(sell + buy, dtype=f64)
        orders, trades = [], []
        for cid in self.pending:
            o = self.orders[cid]
            a = self._index[o.symbol]
            share = o.qty / float(want[a])  # of this asset's orders in this bar
            qty = float(done[a]) * share
            status = "FILLED" if qty >= o.qty * (1.0 - 1e-12) else "CANCELED"
            px = float(fill.price[0, a])
            if qty > 0:
                trades.append(Trade(
                    trade_id=f"{o.broker_order_id}-1", client_order_id=cid, symbol=o.symbol,
                    side=o.side, qty=qty, price=px, fee=float(fill.asset_fees[0, a]) * share,
                    at=bar,
                ))  # fmt: skip
            self.orders[cid] = _replace(o, status=status, filled_qty=qty,
                                        avg_price=px if qty > 0 else None)  # fmt: skip
            orders.append(self.orders[cid])
        self.trades.extend(trades)
        self.pending = []
        return orders, trades


def _replace(o: BrokerOrder, **changes: Any) -> BrokerOrder:
    return dataclasses.replace(o, **changes)


def _row(x: Any) -> dict[str, Any]:
    """A flat dataclass as a JSON-ready dict (no deep copy: its fields are scalars)."""
    d = dict(vars(x))
    if isinstance(d.get("at"), datetime):
        d["at"] = d["at"].isoformat()
    return d
