"""Any ccxt exchange as a broker (spot, market orders), in its sandbox unless ``--live``.

- Keys come from ``CAPPUCCINO_<EXCHANGE>_API_KEY`` / ``_SECRET`` only (never logged).
- Without ``--live`` the exchange's sandbox (testnet) is used; an exchange without one
  refuses to start rather than trade real money by default.
- Every order carries its client order id (``clientOrderId``), and is looked up by it.
- Quantities are truncated to the market's amount precision; an order below the market's
  minimum amount or cost is not sent (the runner records it as skipped).
- The account is the session's portfolio: cash is the quote currency's total balance,
  positions the base currencies' totals.
- A commission charged in the base asset (Binance's default on buys) is folded into the
  trade: its quantity is the units received, its fee the commission valued at the fill
  price, so positions and cash reconcile. A commission in a third asset (BNB) is not in
  the session's currencies and is recorded as 0.
- 429s (the request was refused, not processed) are retried with backoff; timeouts, 5xx
  and lost connections on a submit are :class:`SubmitUncertain`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from cappuccino.live.broker import (
    Account,
    BrokerOrder,
    BrokerUnavailable,
    DuplicateOrder,
    OrderRejected,
    OrderRequest,
    Position,
    SubmitUncertain,
    Trade,
)
from cappuccino.live.symbols import SymbolMap

log = logging.getLogger(__name__)

_STATUS = {"open": "ACCEPTED", "closed": "FILLED", "canceled": "CANCELED",
           "expired": "EXPIRED", "rejected": "REJECTED"}  # fmt: skip


class CcxtBroker:
    """The broker protocol over a ccxt exchange object (``make_exchange``)."""

    def __init__(
        self, exchange: Any, exchange_id: str, symbols: SymbolMap, *, live: bool = False,
        retries: int = 3, backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        self.ex, self.exchange_id, self.symbols = exchange, exchange_id, symbols
        self.name = f"ccxt:{exchange_id}"
        self.mode = "live" if live else "paper"
        self.retries, self.backoff_s, self.sleep = retries, backoff_s, sleep
        self._cid_symbol: dict[str, str] = {}  # client order id -> model symbol
        self._symbol_seen: dict[str, int] = {}  # model symbol -> last order activity, epoch ms
        self._warm = False
        self._order_cid: dict[str, str] = {}  # exchange order id -> client order id
        self._loaded = False
        self._quote: str | None = None  # the session's quote currency, known once loaded

    @classmethod
    def from_env(
        cls, exchange_id: str, symbols: SymbolMap, *, live: bool = False, url: str | None = None
    ) -> CcxtBroker:
        from cappuccino.data.download import _rebase, make_exchange

        ex = make_exchange(exchange_id, options={"fetchCurrencies": False})
        if not ex.apiKey:
            prefix = f"CAPPUCCINO_{exchange_id.upper()}_"
            raise ValueError(f"--broker ccxt:{exchange_id}: set {prefix}API_KEY and {prefix}SECRET "
                             "in the environment (keys are read from there only)")  # fmt: skip
        if not live:
            if "test" not in ex.urls:
                raise ValueError(f"--broker ccxt:{exchange_id}: the exchange has no sandbox; "
                                 "pass --live to trade it for real")  # fmt: skip
            ex.set_sandbox_mode(True)
        if url:
            ex.urls["api"] = _rebase(ex.urls["api"], url)
        return cls(ex, exchange_id, symbols, live=live)

    # -- calls -------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A read, retried on 429; unreachable -> BrokerUnavailable."""
        import ccxt

        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kw)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                if attempt == self.retries:
                    raise BrokerUnavailable(f"{self.name}: rate limited ({exc})") from exc
                self.sleep(self.backoff_s * 2**attempt)
            except (ccxt.NetworkError, ccxt.OperationFailed) as exc:
                raise BrokerUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            except ccxt.AuthenticationError as exc:
                raise BrokerUnavailable(f"{self.name}: authentication failed ({exc})") from exc
        raise AssertionError("unreachable")

    def _load(self) -> None:
        if not self._loaded:
            self._call(self.ex.load_markets)
            for s in self.symbols.to_broker_map.values():
                if s not in self.ex.markets:
                    raise ValueError(f"--symbol-map: {s!r} is not listed on {self.exchange_id}")
            quotes = {self.ex.markets[s]["quote"] for s in self.symbols.to_broker_map.values()}
            if len(quotes) != 1:
                raise ValueError(f"{self.name}: the session's symbols are quoted in "
                                 f"{sorted(quotes)}, expected one quote currency")  # fmt: skip
            self._quote = quotes.pop()
            self._loaded = True

    def _market(self, model: str) -> dict[str, Any]:
        self._load()
        return dict(self.ex.markets[self.symbols.to_broker(model)])

    # -- the protocol ------------------------------------------------------------------------
    def now(self) -> datetime:
        ms = self._call(self.ex.fetch_time)
        return datetime.fromtimestamp(int(ms) / 1000, UTC)

    def _balance(self) -> dict[str, Any]:
        self._load()
        return dict(self._call(self.ex.fetch_balance))

    def account(self) -> Account:
        bal = self._balance()
        cash = float((bal.get(str(self._quote)) or {}).get("total") or 0.0)
        value = 0.0
        held = self.positions(bal)
        if held:
            tickers = self._call(self.ex.fetch_tickers,
                                 [self.symbols.to_broker(s) for s in held])  # fmt: skip
            for s, p in held.items():
                last = tickers[self.symbols.to_broker(s)]["last"]
                value += p.qty * float(last)
        return Account(cash=cash, equity=cash + value)

    def positions(self, balance: dict[str, Any] | None = None) -> dict[str, Position]:
        bal = balance if balance is not None else self._balance()
        out = {}
        for model in self.symbols.to_broker_map:
            base = self._market(model)["base"]
            qty = float((bal.get(base) or {}).get("total") or 0.0)
            if qty > 0:
                out[model] = Position(model, qty, 0.0)
        return out

    def open_orders(self) -> list[BrokerOrder]:
        self._load()
        out = []
        if self.ex.has.get("fetchOpenOrders") and self.exchange_id == "binance":
            # one request for every symbol (Binance weighs it more; it saves a round trip
            # per symbol on every bar)
            self.ex.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
            rows = [(o, self.symbols.to_model(o["symbol"])) for o in
                    self._call(self.ex.fetch_open_orders)]  # fmt: skip
        else:
            rows = [(o, model) for model, sym in self.symbols.to_broker_map.items()
                    for o in self._call(self.ex.fetch_open_orders, sym)]  # fmt: skip
        for o, model in rows:
            if model is None:
                continue
            got = self._order(o, model)
            if got is not None:
                out.append(got)
        return out

    def round_qty(self, symbol: str, qty: float) -> float:
        m = self._market(symbol)
        q = float(self.ex.amount_to_precision(self.symbols.to_broker(symbol), qty))
        limits = m.get("limits") or {}
        min_amount = (limits.get("amount") or {}).get("min") or 0.0
        return q if q >= float(min_amount) and q > 0 else 0.0

    def submit(self, order: OrderRequest) -> BrokerOrder:
        import ccxt

        sym = self.symbols.to_broker(order.symbol)
        self._load()
        self._cid_symbol[order.client_order_id] = order.symbol
        for attempt in range(self.retries + 1):
            try:
                raw = self.ex.create_order(sym, "market", order.side, order.qty, None,
                                           {"clientOrderId": order.client_order_id})  # fmt: skip
                break
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                if attempt == self.retries:  # refused each time: nothing was placed
                    raise SubmitUncertain(f"{self.name}: rate limited ({exc})") from exc
                self.sleep(self.backoff_s * 2**attempt)
            except (ccxt.NetworkError, ccxt.OperationFailed) as exc:
                # timeouts, 5xx ("internal error"), resets: it may have arrived
                raise SubmitUncertain(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            except (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest) as exc:
                if "duplicate" in str(exc).lower():
                    raise DuplicateOrder(str(exc)) from exc
                raise OrderRejected(f"{self.name}: {exc}") from exc
        got = self._order(raw, order.symbol)
        if got is None or got.client_order_id != order.client_order_id:
            raise OrderRejected(f"{self.name}: the exchange answered another order: {raw}")
        return got

    def _find(self, cid: str, symbol: str | None) -> tuple[dict[str, Any], str] | None:
        import ccxt

        model = symbol or self._cid_symbol.get(cid)
        candidates = [model] if model else list(self.symbols.to_broker_map)
        for m in candidates:
            self._load()
            try:
                raw = self._call(self.ex.fetch_order, None, self.symbols.to_broker(m),
                                 {"clientOrderId": cid})  # fmt: skip
            except ccxt.OrderNotFound:
                continue
            self._cid_symbol[cid] = m
            return raw, m
        return None

    def order(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        found = self._find(client_order_id, symbol)
        return None if found is None else self._order(*found)

    def cancel(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        import ccxt

        found = self.order(client_order_id, symbol)
        if found is None or found.final:
            return found
        # final meanwhile (filled) is refused: the look-up below says how it ended
        with contextlib.suppress(ccxt.OrderNotFound, ccxt.OperationRejected, ccxt.InvalidOrder):
            self._call(self.ex.cancel_order, found.broker_order_id,
                       self.symbols.to_broker(found.symbol))  # fmt: skip
        return self.order(client_order_id, found.symbol)

    def trades_since(self, since: datetime) -> list[Trade]:
        """Executions since ``since`` of the symbols this adapter has sent or looked up orders
        for since then (Binance lists trades per symbol: one request each)."""
        ms = int(since.timestamp() * 1000)
        out = []
        active = {m for m, t in self._symbol_seen.items() if t >= ms - 86_400_000}
        if not self._warm:  # the first call (a start or restart): every symbol
            active, self._warm = set(self.symbols.to_broker_map), True
        for model, sym in self.symbols.to_broker_map.items():
            if model not in active:
                continue
            self._load()
            for t in self._call(self.ex.fetch_my_trades, sym, ms):
                oid = str(t["order"])
                cid = t.get("clientOrderId") or self._order_cid.get(oid)
                if cid is None:
                    raw = self._call(self.ex.fetch_order, oid, sym)
                    cid = raw.get("clientOrderId")
                    self._order_cid[oid] = cid
                qty, px = float(t["amount"]), float(t["price"])
                fee = t.get("fee") or {}
                cost, cur = float(fee.get("cost") or 0.0), fee.get("currency")
                base = self._market(model)["base"]
                if cur == base and cost:  # paid in the asset received: fewer units
                    net = qty - cost
                    fee_q = cost * px
                    qty, px, fee_cost = net, (qty * px - fee_q) / net, fee_q
                elif cur == self._quote:
                    fee_cost = cost
                else:
                    fee_cost = 0.0
                out.append(Trade(trade_id=str(t["id"]), client_order_id=str(cid), symbol=model,
                                 side=t["side"], qty=qty, price=px, fee=fee_cost,
                                 at=datetime.fromtimestamp(int(t["timestamp"]) / 1000, UTC)))  # fmt: skip
        return out

    def on_bar(
        self, bar: datetime, open: npt.NDArray[np.float64], close: npt.NDArray[np.float64]
    ) -> None:
        return None

    def _order(self, o: dict[str, Any], model: str) -> BrokerOrder | None:
        cid = o.get("clientOrderId")
        if not cid:
            return None
        self._order_cid[str(o["id"])] = cid
        self._cid_symbol[cid] = model
        stamp = o.get("lastUpdateTimestamp") or o.get("timestamp") or 0
        self._symbol_seen[model] = max(self._symbol_seen.get(model, 0), int(stamp))
        status = _STATUS.get(o.get("status") or "open", "ACCEPTED")
        filled = float(o.get("filled") or 0.0)
        amount = float(o.get("amount") or 0.0)
        if status == "ACCEPTED" and filled > 0:
            status = "PARTIALLY_FILLED"
        if status == "FILLED" and filled < amount * (1 - 1e-12):
            status = "EXPIRED"  # closed short of its amount (an IOC market order's remainder)
        avg = o.get("average")
        return BrokerOrder(client_order_id=cid, broker_order_id=str(o["id"]), symbol=model,
                           side=o["side"], qty=amount, status=status, filled_qty=filled,
                           avg_price=float(avg) if avg else None)  # fmt: skip
