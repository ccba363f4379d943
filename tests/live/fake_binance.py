"""A loopback fake of Binance's spot REST API for trading through ccxt: the public candles
of :class:`tests.data.exchange_server.FakeBinance` plus the signed account, order, open
orders, my-trades and ticker endpoints. Binds 127.0.0.1 only.

A MARKET order fills at ``prices[symbol]`` with a commission of ``fee_rate`` in the quote
asset, fully at once or as ``fill`` says (``"partial"``: ``partial_fraction`` now, the rest
open; ``"later"``: open until :meth:`fill_open`). A repeated ``newClientOrderId`` is refused
with ``-2010 Duplicate order sent.``, a look-up of an unknown one with ``-2013``.

``faults`` as :mod:`tests.live.fake_alpaca` (routes ``submit``, ``lookup``, ``activities``
for ``myTrades``); Binance's 429 carries code -1003.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..data.exchange_server import FakeBinance
from .fakes import FaultQueue


class FakeBinanceTrading(FakeBinance, FaultQueue):
    def __init__(self, candles: list[list[Any]] | None = None, now_ms: int | None = None, *,
                 cash: float = 100_000.0, prices: dict[str, float] | None = None) -> None:  # fmt: skip
        super().__init__(candles or [], now_ms if now_ms is not None else int(time.time() * 1000))
        self.server.server_close()  # the base class's server: replaced by one that trades
        self.lock = threading.RLock()
        self.balances: dict[str, float] = {"USDT": cash}
        self.prices = dict(prices or {"BTCUSDT": 30_000.0, "ETHUSDT": 2_000.0})
        self.orders: dict[int, dict[str, Any]] = {}
        self.by_cid: dict[str, int] = {}
        self.trades: list[dict[str, Any]] = []
        self.fill, self.partial_fraction, self.fee_rate = "full", 0.4, 0.0
        self.faults: list[tuple[str, str]] = []
        self._next_id = 1
        self.candles_by_symbol: dict[str, list[list[Any]]] = {}  # "BTCUSDT" -> candles
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n).decode() if n else ""
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                q.update({k: v[0] for k, v in parse_qs(raw).items()})
                with fake.lock:
                    result = fake.trade_route(method, url.path, q, self.headers)
                if result is None:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, body = result
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)  # fmt: skip

    def trade_route(self, method: str, path: str, q: dict[str, str],
                    headers: Any) -> tuple[int, Any] | None:  # fmt: skip
        private = path in ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders",
                           "/api/v3/myTrades")  # fmt: skip
        if private and headers.get("X-MBX-APIKEY") != "key-id":
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        route = {("POST", "/api/v3/order"): "submit", ("GET", "/api/v3/order"): "lookup",
                 ("GET", "/api/v3/myTrades"): "activities"}.get((method, path), "")  # fmt: skip
        fault = self._fault(route) if route else None
        if fault == "429":
            return 429, {"code": -1003, "msg": "Too many requests."}
        if fault in ("500", "503"):
            return int(fault), {"code": -1001, "msg": "Internal error; unable to process."}
        if method == "GET" and path == "/api/v3/account":
            return 200, {"makerCommission": 0, "takerCommission": 0, "canTrade": True,
                         "accountType": "SPOT", "updateTime": self.now_ms,
                         "balances": [{"asset": a, "free": repr(v), "locked": "0"}
                                      for a, v in sorted(self.balances.items())],
                         "permissions": ["SPOT"]}  # fmt: skip
        if method == "GET" and path in ("/api/v3/ticker/24hr", "/api/v3/ticker/price"):
            return 200, [{"symbol": s, "lastPrice": repr(p), "price": repr(p), "openPrice": repr(p),
                          "highPrice": repr(p), "lowPrice": repr(p), "volume": "1",
                          "quoteVolume": repr(p), "closeTime": self.now_ms,
                          "openTime": self.now_ms - 86_400_000, "count": 1, "bidPrice": repr(p),
                          "askPrice": repr(p)} for s, p in self.prices.items()]  # fmt: skip
        if method == "POST" and path == "/api/v3/order":
            return self.submit(q, fault)
        if path == "/api/v3/order":
            oid = self._oid(q)
            if oid is None or (fault == "404" and method == "GET"):
                code = -2013 if method == "GET" else -2011
                return 400, {"code": code, "msg": "Order does not exist." if code == -2013
                             else "Unknown order sent."}  # fmt: skip
            o = self.orders[oid]
            if method == "GET":
                return 200, o
            if o["status"] not in OPEN:
                return 400, {"code": -2011, "msg": "Unknown order sent."}
            o["status"] = "CANCELED"
            return 200, o
        if method == "GET" and path == "/api/v3/openOrders":
            return 200, [o for o in self.orders.values() if o["status"] in OPEN
                         and o["symbol"] == q.get("symbol", o["symbol"])]  # fmt: skip
        if method == "GET" and path == "/api/v3/myTrades":
            start = int(q.get("startTime", 0))
            rows = [t for t in self.trades if t["symbol"] == q.get("symbol") and t["time"] >= start]
            if fault == "dup_fill" and rows:
                rows = [*rows, rows[-1]]
            return 200, rows
        if (
            method == "GET"
            and path == "/api/v3/klines"
            and q.get("symbol") in self.candles_by_symbol
        ):
            self.candles = self.candles_by_symbol[q["symbol"]]
        if method == "GET":
            return self.route(path, q)
        return 404, {"code": -1, "msg": f"no route {method} {path}"}

    def _oid(self, q: dict[str, str]) -> int | None:
        if "origClientOrderId" in q:
            return self.by_cid.get(q["origClientOrderId"])
        if "orderId" in q and int(q["orderId"]) in self.orders:
            return int(q["orderId"])
        return None

    def submit(self, q: dict[str, str], fault: str | None) -> tuple[int, Any] | None:
        cid = q.get("newClientOrderId", "")
        if cid in self.by_cid:
            return 400, {"code": -2010, "msg": "Duplicate order sent."}
        sym, side, qty = q["symbol"], q["side"], float(q["quantity"])
        base = sym[:-4]
        if side == "SELL" and qty > self.balances.get(base, 0.0) * (1 + 1e-12):
            return 400, {
                "code": -2010,
                "msg": "Account has insufficient balance for requested action.",
            }
        if side == "BUY" and qty * self.prices[sym] > self.balances["USDT"] * (1 + 1e-12):
            return 400, {
                "code": -2010,
                "msg": "Account has insufficient balance for requested action.",
            }
        oid, self._next_id = self._next_id, self._next_id + 1
        o = {"symbol": sym, "orderId": oid, "orderListId": -1, "clientOrderId": cid,
             "transactTime": self.now_ms, "price": "0.00000000", "origQty": repr(qty),
             "executedQty": "0.0", "cummulativeQuoteQty": "0.0", "status": "NEW",
             "timeInForce": "GTC", "type": "MARKET", "side": side, "time": self.now_ms,
             "updateTime": self.now_ms, "isWorking": True}  # fmt: skip
        self.orders[oid], self.by_cid[cid] = o, oid
        if self.fill == "full":
            self._execute(o, qty)
        elif self.fill == "partial":
            self._execute(o, qty * self.partial_fraction)
        if fault in ("500_after_accept", "504_after_accept"):
            msg = "Timeout waiting for response from backend server. Send status unknown."
            return int(fault[:3]), {"code": -1007, "msg": msg}
        if fault == "drop_after_accept":
            return None
        return 200, o

    def _execute(self, o: dict[str, Any], qty: float) -> None:
        sym, base = o["symbol"], o["symbol"][:-4]
        px = self.prices[sym]
        notional, fee = qty * px, qty * px * self.fee_rate
        if o["side"] == "BUY":
            self.balances["USDT"] -= notional + fee
            self.balances[base] = self.balances.get(base, 0.0) + qty
        else:
            self.balances[base] -= qty
            self.balances["USDT"] += notional - fee
        done = float(o["executedQty"]) + qty
        o["executedQty"] = repr(done)
        o["cummulativeQuoteQty"] = repr(float(o["cummulativeQuoteQty"]) + notional)
        o["status"] = "FILLED" if done >= float(o["origQty"]) * (1 - 1e-12) else "PARTIALLY_FILLED"
        self.trades.append({"symbol": sym, "id": len(self.trades) + 1, "orderId": o["orderId"],
                            "orderListId": -1, "price": repr(px), "qty": repr(qty),
                            "quoteQty": repr(notional), "commission": repr(fee),
                            "commissionAsset": "USDT", "time": self.now_ms,
                            "isBuyer": o["side"] == "BUY", "isMaker": False,
                            "isBestMatch": True})  # fmt: skip

    def fill_open(self) -> None:
        with self.lock:
            for o in self.orders.values():
                if o["status"] in OPEN:
                    self._execute(o, float(o["origQty"]) - float(o["executedQty"]))

    def n_orders(self, cid: str | None = None) -> int:
        with self.lock:
            return sum(1 for o in self.orders.values() if cid is None or o["clientOrderId"] == cid)


OPEN = ("NEW", "PARTIALLY_FILLED")
