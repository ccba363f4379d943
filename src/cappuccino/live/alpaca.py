"""Alpaca through alpaca-py's ``TradingClient``: the paper endpoint unless ``--live``.

- Keys come from ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` only (never logged).
- Crypto market orders, ``gtc``; the quantity is rounded down to the asset's
  ``min_trade_increment`` (an order below ``min_order_size`` is not sent: the runner
  records it as skipped).
- Symbols go through the session's :class:`~cappuccino.live.symbols.SymbolMap`: the model's
  ``BTC/USDT`` may trade as ``BTC/USD``; positions come back as ``BTCUSD`` and are matched
  by the one symbol key.
- alpaca-py retries a POST by itself on 429 and 504. The client order id makes that safe:
  a retried submit that already arrived is refused as a duplicate, which the runner
  resolves by looking the order up.
- A submit that times out, gets a 5xx or loses its connection is :class:`SubmitUncertain`.
- Executions are the account's ``FILL`` activities (fees: 0 in the quote currency; Alpaca
  charges crypto fees as separate ``CFEE`` activities, which this adapter does not read).
"""

from __future__ import annotations

import math
import os
import time
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

KEY_ENV, SECRET_ENV = "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"
PAPER_URL = "https://paper-api.alpaca.markets"
TIMEOUT_S = 10.0
READ_RETRY_WAITS_S = (0.2, 0.5, 1.0)

_STATUS = {
    "new": "ACCEPTED", "accepted": "ACCEPTED", "pending_new": "ACCEPTED",
    "accepted_for_bidding": "ACCEPTED", "pending_cancel": "ACCEPTED",
    "pending_replace": "ACCEPTED", "calculated": "ACCEPTED", "held": "ACCEPTED",
    "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "canceled": "CANCELED",
    "replaced": "CANCELED", "expired": "EXPIRED", "done_for_day": "EXPIRED",
    "stopped": "ACCEPTED", "rejected": "REJECTED", "suspended": "ACCEPTED",
}  # fmt: skip


def _credentials() -> tuple[str, str]:
    key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
    if not key or not secret:
        raise ValueError(f"--broker alpaca: set {KEY_ENV} and {SECRET_ENV} in the environment "
                         "(keys are read from there only)")  # fmt: skip
    return key, secret


class AlpacaBroker:
    """The broker protocol over a ``TradingClient`` (``raw_data``: plain JSON, no models)."""

    name = "alpaca"

    def __init__(
        self, client: Any, symbols: SymbolMap, *, live: bool = False, retry_wait_s: float = 3.0
    ) -> None:
        self.client = client
        self.symbols = symbols
        self.mode = "live" if live else "paper"
        self._increment: dict[str, tuple[float, float]] = {}
        self._cids: dict[str, str] = {}  # broker order id -> client order id
        # alpaca-py waits a fixed time before its own 429/504 retries; keep it short in tests
        if hasattr(client, "_retry_wait"):
            client._retry_wait = retry_wait_s
        session = getattr(client, "_session", None)
        if session is not None:  # requests has no default timeout: a hung server would hang us
            request = session.request

            def with_timeout(method: str, url: str, **kw: Any) -> Any:
                kw.setdefault("timeout", TIMEOUT_S)
                return request(method, url, **kw)

            session.request = with_timeout

    @classmethod
    def from_env(
        cls, symbols: SymbolMap, *, live: bool = False, url: str | None = None
    ) -> AlpacaBroker:
        from alpaca.trading.client import TradingClient

        key, secret = _credentials()
        client = TradingClient(key, secret, paper=not live, raw_data=True, url_override=url)
        return cls(client, symbols, live=live)

    # -- errors ------------------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any) -> Any:
        """A read (or a cancel), retried on a transient failure (a 5xx, a lost connection, a
        timeout) after 0.2, 0.5 and 1 s; still failing, or refused (401, 403, 429 after
        alpaca-py's own retries): BrokerUnavailable (exit 3)."""
        import requests
        from alpaca.common.exceptions import APIError

        for wait in (*READ_RETRY_WAITS_S, None):
            try:
                return fn(*args)
            except requests.RequestException as exc:
                if wait is None:
                    raise BrokerUnavailable(f"alpaca: {type(exc).__name__}: {exc}") from exc
            except APIError as exc:
                code = exc.status_code or 0
                if code in (401, 403, 429) or (code >= 500 and wait is None):
                    raise BrokerUnavailable(f"alpaca: HTTP {code}: {_msg(exc)}") from exc
                if code < 500:
                    raise
            time.sleep(wait or 0.0)
        raise AssertionError("unreachable")

    # -- the protocol ------------------------------------------------------------------------
    def now(self) -> datetime:
        clock = self._call(self.client.get_clock)
        return _time(clock["timestamp"])

    def account(self) -> Account:
        a = self._call(self.client.get_account)
        return Account(cash=float(a["cash"]), equity=float(a["equity"]))

    def positions(self) -> dict[str, Position]:
        out = {}
        for p in self._call(self.client.get_all_positions):
            model = self.symbols.to_model(p["symbol"])
            if model is not None and float(p["qty"]) > 0:
                out[model] = Position(model, float(p["qty"]), float(p["avg_entry_price"]))
        return out

    def open_orders(self) -> list[BrokerOrder]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        req = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        rows = self._call(self.client.get_orders, req)
        return [o for o in (self._order(r) for r in rows) if o is not None]

    def round_qty(self, symbol: str, qty: float) -> float:
        step, minimum = self._asset(symbol)
        q = math.floor(qty / step + 1e-9) * step
        q = float(f"{q:.12g}")
        return q if q >= minimum else 0.0

    def _asset(self, symbol: str) -> tuple[float, float]:
        if symbol not in self._increment:
            a = self._call(self.client.get_asset, self.symbols.to_broker(symbol))
            step = float(a.get("min_trade_increment") or 1e-9)
            self._increment[symbol] = (step, float(a.get("min_order_size") or 0.0))
        return self._increment[symbol]

    def submit(self, order: OrderRequest) -> BrokerOrder:
        import requests
        from alpaca.common.exceptions import APIError
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        req = MarketOrderRequest(
            symbol=self.symbols.to_broker(order.symbol), qty=order.qty,
            side=OrderSide.BUY if order.side == "buy" else OrderSide.SELL,
            time_in_force=TimeInForce.GTC, client_order_id=order.client_order_id,
        )  # fmt: skip
        try:
            raw = self.client.submit_order(req)
        except requests.RequestException as exc:  # timeout, reset: it may have arrived
            raise SubmitUncertain(f"alpaca: {type(exc).__name__}") from exc
        except APIError as exc:
            code, text = exc.status_code or 0, _msg(exc)
            if code >= 500 or code == 429:
                raise SubmitUncertain(f"alpaca: HTTP {code}: {text}") from exc
            if "client_order_id must be unique" in text:
                raise DuplicateOrder(text) from exc
            raise OrderRejected(f"alpaca: HTTP {code}: {text}") from exc
        got = self._order(raw)
        if got is None:
            raise OrderRejected(f"alpaca: the order came back for another symbol: {raw}")
        return got

    def cancel(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        from alpaca.common.exceptions import APIError

        found = self.order(client_order_id)
        if found is None or found.final or found.broker_order_id is None:
            return found
        try:
            self._call(self.client.cancel_order_by_id, found.broker_order_id)
        except APIError as exc:
            if exc.status_code not in (404, 422):  # 422: already final (filled meanwhile)
                raise
        return self.order(client_order_id)  # the state after the request, as the broker says

    def order(self, client_order_id: str, symbol: str | None = None) -> BrokerOrder | None:
        from alpaca.common.exceptions import APIError

        try:
            raw = self._call(self.client.get_order_by_client_id, client_order_id)
        except APIError as exc:
            if exc.status_code == 404:
                return None
            raise
        return self._order(raw)

    def trades_since(self, since: datetime) -> list[Trade]:
        after = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
        rows = self._call(self.client.get, "/account/activities/FILL", {"after": after})
        out = []
        for r in rows:
            model = self.symbols.to_model(r["symbol"])
            if model is None:
                continue
            cid = self._cids.get(r["order_id"]) or self._cid_of(r["order_id"])
            out.append(Trade(trade_id=str(r["id"]), client_order_id=cid, symbol=model,
                             side=r["side"], qty=float(r["qty"]), price=float(r["price"]),
                             fee=0.0, at=_time(r["transaction_time"])))  # fmt: skip
        return out

    def _cid_of(self, order_id: str) -> str:
        raw = self._call(self.client.get_order_by_id, order_id)
        self._cids[order_id] = raw["client_order_id"]
        return str(raw["client_order_id"])

    def on_bar(
        self, bar: datetime, open: npt.NDArray[np.float64], close: npt.NDArray[np.float64]
    ) -> None:
        return None

    def _order(self, r: dict[str, Any]) -> BrokerOrder | None:
        model = self.symbols.to_model(r["symbol"])
        if model is None:
            return None
        self._cids[r["id"]] = r["client_order_id"]
        px = r.get("filled_avg_price")
        return BrokerOrder(
            client_order_id=r["client_order_id"], broker_order_id=r["id"], symbol=model,
            side=r["side"], qty=float(r["qty"] or 0.0), status=_STATUS.get(r["status"], "ACCEPTED"),
            filled_qty=float(r.get("filled_qty") or 0.0), avg_price=float(px) if px else None,
        )  # fmt: skip


def _msg(exc: Any) -> str:
    try:
        return str(exc.message)
    except (ValueError, KeyError, TypeError):
        return str(exc)[:300]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
