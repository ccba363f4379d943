"""A loopback fake of Alpaca's trading REST API (v2), the slice alpaca-py's ``TradingClient``
uses for crypto: account, positions, orders (submit, by id, by client order id, open list,
cancel), fill activities, assets and the clock. Binds 127.0.0.1 only.

A market order fills at ``prices[symbol]`` (a fee of ``fee_rate`` of the notional is taken
from the cash) fully and at once, or by the ``fill`` mode: ``"partial"`` fills
``partial_fraction`` now and leaves the rest open; ``"later"`` leaves the order accepted
until :meth:`FakeAlpaca.fill_open` fills it. The client order id is unique: a second
submit with it is refused with 422, as Alpaca does.

Faults (``faults``: a list consumed in order, each ``(route, kind)``; route ``"submit"``,
``"lookup"``, ``"activities"`` or ``"any"``):

- ``429``, ``500``, ``503``: answered before anything is processed;
- ``500_after_accept``, ``504_after_accept``: the order is accepted, then the answer is an error;
- ``drop_after_accept``: the order is accepted, then the connection is closed unanswered;
- ``404``: a look-up answers "not found" although the order exists;
- ``dup_fill``: the activities list repeats its newest fill.

``chaos_rate``: that share of all calls (seeded, ``rng``) gets one of :data:`CHAOS`'s faults
for its route (a 500 for any other), logged in ``chaos_log``.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .fakes import FaultQueue


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeAlpaca(FaultQueue):
    def __init__(self, *, cash: float = 100_000.0, prices: dict[str, float] | None = None) -> None:
        self.lock = threading.RLock()
        self.cash = cash
        self.prices = dict(prices or {"BTC/USD": 30_000.0, "ETH/USD": 2_000.0})
        self.positions: dict[str, float] = {}  # "BTCUSD" -> qty
        self.cost: dict[str, float] = {}  # "BTCUSD" -> cost basis (quote)
        self.orders: dict[str, dict[str, Any]] = {}  # id -> order
        self.by_cid: dict[str, str] = {}
        self.activities: list[dict[str, Any]] = []
        self.fill = "full"
        self.partial_fraction = 0.4
        self.fee_rate = 0.0
        self.faults: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.submits_processed = 0
        self.duplicate_attempts = 0  # submits refused for a client order id already used
        self.min_trade_increment = 1e-9
        self.chaos_rate = 0.0  # the share of calls answered with a random recoverable fault
        self.rng = np.random.default_rng(0)
        self.chaos_log: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _send(self, status: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self._body() if method == "POST" else None
                if self.headers.get("APCA-API-KEY-ID") != "key-id":
                    self._send(401, {"code": 40110000, "message": "request is not authorized"})
                    return
                with fake.lock:
                    fake.requests.append((method, url.path))
                    result = fake.route(method, url.path, q, body)
                if result is None:  # dropped: close without an answer
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._send(*result)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeAlpaca:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- faults ------------------------------------------------------------------------------

    # -- routes ------------------------------------------------------------------------------
    def route(self, method: str, path: str, q: dict[str, str], body: Any) -> tuple[int, Any] | None:
        routes = {"POST /v2/orders": "submit", "GET /v2/orders:by_client_order_id": "lookup",
                  "GET /v2/account/activities/FILL": "activities"}  # fmt: skip
        kind_route = routes.get(f"{method} {path}", "")
        fault = self._fault(kind_route) if kind_route else None
        if fault is None and self.chaos_rate and self.rng.random() < self.chaos_rate:
            kinds = CHAOS.get(kind_route, ("500",))
            fault = kinds[int(self.rng.integers(len(kinds)))]
            self.chaos_log.append((f"{method} {path}", fault))
        if fault == "500" and kind_route not in ("submit", "lookup", "activities"):
            return 500, {"code": 50000000, "message": "fake 500"}
        if fault in ("429", "500", "503"):
            return int(fault), {"code": int(fault) * 100000, "message": f"fake {fault}"}
        if fault == "404" and kind_route == "lookup":
            return 404, {"code": 40410000, "message": "order not found"}
        if method == "GET" and path == "/v2/account":
            return 200, self.account()
        if method == "GET" and path == "/v2/clock":
            return 200, {"timestamp": _now(), "is_open": True, "next_open": _now(),
                         "next_close": _now()}  # fmt: skip
        if method == "GET" and path == "/v2/positions":
            return 200, [self.position(s) for s, q in sorted(self.positions.items()) if q > 0]
        if method == "GET" and path.startswith("/v2/assets/"):
            sym = path.split("/v2/assets/", 1)[1]
            return 200, {"id": str(uuid.uuid4()), "class": "crypto", "exchange": "CRYPTO",
                         "symbol": sym, "name": sym, "status": "active", "tradable": True,
                         "marginable": False, "shortable": False, "easy_to_borrow": False,
                         "fractionable": True, "min_order_size": "0.000001",
                         "min_trade_increment": repr(self.min_trade_increment),
                         "price_increment": "0.01"}  # fmt: skip
        if method == "POST" and path == "/v2/orders":
            return self.submit(body, fault)
        if method == "GET" and path == "/v2/orders":
            status = q.get("status", "open")
            rows = [o for o in self.orders.values()
                    if status == "all" or (status == "open") == (o["status"] in OPEN)]  # fmt: skip
            return 200, rows
        if method == "GET" and path == "/v2/orders:by_client_order_id":
            oid = self.by_cid.get(q.get("client_order_id", ""))
            if oid is None:
                return 404, {"code": 40410000, "message": "order not found"}
            return 200, self.orders[oid]
        if path.startswith("/v2/orders/"):
            oid = path.split("/v2/orders/", 1)[1]
            if oid not in self.orders:
                return 404, {"code": 40410000, "message": "order not found"}
            if method == "GET":
                return 200, self.orders[oid]
            if method == "DELETE":
                o = self.orders[oid]
                if o["status"] not in OPEN:
                    return 422, {"code": 42210000, "message": f"order is already {o['status']}"}
                o["status"], o["canceled_at"], o["updated_at"] = "canceled", _now(), _now()
                return 204, None
        if method == "GET" and path == "/v2/account/activities/FILL":
            after = _parse(q["after"]) if "after" in q else None
            rows = [a for a in self.activities
                    if after is None or _parse(a["transaction_time"]) >= after]  # fmt: skip
            if fault == "dup_fill" and rows:
                rows = [*rows, rows[-1]]
            return 200, rows
        return 404, {"code": 40400000, "message": f"no route {method} {path}"}

    def account(self) -> dict[str, Any]:
        value = sum(q * self.prices[_slash(s)] for s, q in self.positions.items())
        return {"id": "fake", "account_number": "PA0000", "status": "ACTIVE", "currency": "USD",
                "cash": repr(self.cash), "equity": repr(self.cash + value),
                "portfolio_value": repr(self.cash + value), "buying_power": repr(self.cash),
                "crypto_status": "ACTIVE"}  # fmt: skip

    def position(self, s: str) -> dict[str, Any]:
        q = self.positions[s]
        px = self.prices[_slash(s)]
        return {"asset_id": str(uuid.uuid4()), "symbol": s, "exchange": "CRYPTO",
                "asset_class": "crypto", "qty": repr(q), "avg_entry_price": repr(self.cost[s] / q),
                "side": "long", "market_value": repr(q * px), "cost_basis": repr(self.cost[s]),
                "current_price": repr(px), "qty_available": repr(q)}  # fmt: skip

    def submit(self, body: dict[str, Any], fault: str | None) -> tuple[int, Any] | None:
        cid = body.get("client_order_id")
        if not cid:
            return 422, {"code": 40010001, "message": "client_order_id is required here"}
        if cid in self.by_cid:
            self.duplicate_attempts += 1
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        sym, side, qty = body["symbol"], body["side"], float(body["qty"])
        if body.get("time_in_force") not in ("gtc", "ioc"):
            return 422, {"code": 42210000, "message": "invalid crypto time_in_force"}
        key = sym.replace("/", "")
        if side == "sell" and qty > self.positions.get(key, 0.0) * (1 + 1e-12):
            return 403, {"code": 40310000, "message": f"insufficient balance for {key}"}
        if side == "buy" and qty * self.prices[sym] * (1 + self.fee_rate) > self.cash * (1 + 1e-12):
            return 403, {"code": 40310000, "message": "insufficient balance for USD"}
        oid = str(uuid.uuid4())
        order = {"id": oid, "client_order_id": cid, "symbol": sym, "asset_class": "crypto",
                 "qty": repr(qty), "filled_qty": "0", "filled_avg_price": None, "side": side,
                 "type": "market", "order_type": "market", "time_in_force": body["time_in_force"],
                 "status": "new", "created_at": _now(), "updated_at": _now(),
                 "submitted_at": _now(), "filled_at": None, "canceled_at": None}  # fmt: skip
        self.orders[oid], self.by_cid[cid] = order, oid
        self.submits_processed += 1
        if self.fill == "full":
            self._execute(order, qty)
        elif self.fill == "partial":
            self._execute(order, qty * self.partial_fraction)
        if fault in ("500_after_accept", "504_after_accept"):
            code = int(fault[:3])
            return code, {"code": code * 100000, "message": f"fake {code} after accept"}
        if fault == "drop_after_accept":
            return None
        return 200, order

    def _execute(self, order: dict[str, Any], qty: float) -> None:
        sym = order["symbol"]
        key = sym.replace("/", "")
        px = self.prices[sym]
        notional = qty * px
        fee = notional * self.fee_rate
        if order["side"] == "buy":
            self.cash -= notional + fee
            self.positions[key] = self.positions.get(key, 0.0) + qty
            self.cost[key] = self.cost.get(key, 0.0) + notional
        else:
            held = self.positions[key]
            self.cost[key] *= (held - qty) / held if held else 0.0
            self.positions[key] = held - qty
            self.cash += notional - fee
        filled = float(order["filled_qty"]) + qty
        prev_px = float(order["filled_avg_price"] or 0.0)
        avg = (prev_px * float(order["filled_qty"]) + px * qty) / filled
        total = float(order["qty"])
        order["filled_qty"], order["filled_avg_price"] = repr(filled), repr(avg)
        order["status"] = "filled" if filled >= total * (1 - 1e-12) else "partially_filled"
        order["updated_at"] = _now()
        if order["status"] == "filled":
            order["filled_at"] = _now()
        self.activities.append({
            "id": f"{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}::{uuid.uuid4()}",
            "activity_type": "FILL", "transaction_time": _now(),
            "type": "fill" if order["status"] == "filled" else "partial_fill",
            "price": repr(px), "qty": repr(qty), "side": order["side"], "symbol": key,
            "leaves_qty": repr(total - filled), "order_id": order["id"],
            "cum_qty": repr(filled), "order_status": order["status"],
        })  # fmt: skip

    def fill_open(self) -> None:
        """Fill what is left of every open order (a market order's later executions)."""
        with self.lock:
            for o in self.orders.values():
                if o["status"] in OPEN:
                    self._execute(o, float(o["qty"]) - float(o["filled_qty"]))

    def n_orders(self, cid: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for o in self.orders.values() if cid is None or o["client_order_id"] == cid
            )


OPEN = ("new", "accepted", "pending_new", "partially_filled")
CHAOS = {  # the chaos replay's faults: each recoverable (never a lost order)
    "submit": ("500", "500_after_accept", "drop_after_accept"),
    "lookup": ("404", "500"),
    "activities": ("dup_fill", "500"),
}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _slash(key: str) -> str:
    return key[:-3] + "/" + key[-3:]
