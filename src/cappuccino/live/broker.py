"""The broker protocol: what the paper runner needs from any broker, in the model's symbols.

A broker adapter (:class:`~cappuccino.live.sim.SimBroker`,
:class:`~cappuccino.live.alpaca.AlpacaBroker`, :class:`~cappuccino.live.exchange.CcxtBroker`)
speaks the model's symbols (``BTC/USDT``) and translates at its own edge through the
session's :class:`~cappuccino.live.symbols.SymbolMap`. Quantities are in the asset's units,
prices and cash in the quote currency, times aware UTC.

Errors say what the runner may do next:

- :class:`SubmitUncertain`: the submit may or may not have reached the broker (a timeout, a
  5xx, a dropped connection after the request was sent). The order is ``UNKNOWN`` and is
  resolved by looking it up by its client order id; it is never blindly sent again.
- :class:`DuplicateOrder`: the broker already holds this client order id (an earlier submit
  did arrive): look it up.
- :class:`OrderRejected`: the broker refused the order (its reason is kept).
- :class:`BrokerUnavailable`: the broker cannot be reached at all (exit code 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

ORDER_STATES = ("PENDING", "SUBMITTED", "UNKNOWN", "ACCEPTED", "PARTIALLY_FILLED", "FILLED",
                "CANCELED", "REJECTED", "EXPIRED")  # fmt: skip
"""Order states. ``PENDING``: the intent is committed, the submit not yet answered;
``UNKNOWN``: the submit's outcome is not known. The last four are final."""
FINAL_STATES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})


class BrokerError(RuntimeError):
    """A broker call failed."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (connection refused, DNS, persistent 5xx)."""


class SubmitUncertain(BrokerError):
    """The submit's outcome is not known: look the order up by its client order id."""


class DuplicateOrder(BrokerError):
    """The broker already has an order with this client order id."""


class OrderRejected(BrokerError):
    """The broker refused the order."""


@dataclass(frozen=True)
class Account:
    """Cash and equity (cash plus positions at the broker's prices), quote currency."""

    cash: float
    equity: float


@dataclass(frozen=True)
class Position:
    """A long position: units held and the average entry price (0 when unknown)."""

    symbol: str
    qty: float
    avg_entry_price: float = 0.0


@dataclass(frozen=True)
class OrderRequest:
    """A market order for ``qty`` units, identified by its client order id."""

    client_order_id: str
    symbol: str
    side: str  # "buy" or "sell"
    qty: float


@dataclass(frozen=True)
class BrokerOrder:
    """What the broker says of one order."""

    client_order_id: str
    broker_order_id: str | None
    symbol: str
    side: str
    qty: float
    status: str  # one of ORDER_STATES
    filled_qty: float = 0.0
    avg_price: float | None = None
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


@dataclass(frozen=True)
class Trade:
    """One execution, identified by the broker's trade id. ``fee`` in the quote currency."""

    trade_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: float
    price: float
    fee: float
    at: datetime


class Broker(Protocol):
    """What the runner calls. Every method may raise :class:`BrokerUnavailable`."""

    name: str
    mode: str  # "dry_run", "paper" or "live": the state file's mode

    def now(self) -> datetime:
        """The broker's clock (bar closes are judged by it)."""
        ...

    def account(self) -> Account: ...

    def positions(self) -> dict[str, Position]:
        """Open positions of the session's symbols (others are ignored)."""
        ...

    def open_orders(self) -> list[BrokerOrder]:
        """Orders of the session's symbols that are not final."""
        ...

    def round_qty(self, symbol: str, qty: float) -> float:
        """``qty`` rounded down to the asset's quantity increment (0 if below it)."""
        ...

    def submit(self, order: OrderRequest) -> BrokerOrder:
        """Send a market order; raises :class:`SubmitUncertain`, :class:`DuplicateOrder` or
        :class:`OrderRejected` as the module docstring says."""
        ...

    def cancel(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        """Request a cancel and return the order's state as the broker reports it after the
        request (a cancel counts only once that state is final); None if not found."""
        ...

    def order(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        """The order with this client order id, or None when the broker does not know it
        (``symbol``: the order's, for venues that look orders up per symbol)."""
        ...

    def trades_since(self, since: datetime) -> list[Trade]:
        """Executions of the session's symbols at or after ``since``."""
        ...

    def on_bar(
        self, bar: datetime, open: npt.NDArray[np.float64], close: npt.NDArray[np.float64]
    ) -> None:
        """A bar closed (prices in the session's symbol order): the simulated broker fills
        at its open; a real broker ignores it."""
        ...
