"""A loopback HTTP server speaking the slice of Binance's public REST API that ccxt uses for klines.

Serves ``/api/v3/exchangeInfo``, ``/api/v3/time`` and ``/api/v3/klines`` from a
list of candles, with a settable "now" (the candle containing now is served as
still open, with partial values), and failure injection: ``fail_next_klines``
answers that many kline requests with HTTP 429; ``die_after_pages`` answers every
kline request after that many with HTTP 503. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOUR_MS = 3_600_000


class FakeBinance:
    def __init__(self, candles: list[list[Any]], now_ms: int) -> None:
        self.candles = sorted(candles, key=lambda c: c[0])
        self.now_ms = now_ms
        self.fail_next_klines = 0
        self.die_after_pages: int | None = None
        self.kline_requests: list[dict[str, str]] = []
        self.pages_served = 0
        self.max_requests = 500  # bounded: a runaway client loop ends with errors
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, body = fake.route(url.path, q)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeBinance:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/v3/time":
            return 200, {"serverTime": self.now_ms}
        if path == "/api/v3/exchangeInfo":
            return 200, {
                "timezone": "UTC",
                "serverTime": self.now_ms,
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [_market("BTC", "USDT"), _market("ETH", "USDT")],
            }
        if path == "/api/v3/klines":
            return self.klines(q)
        return 404, {"code": -1, "msg": f"no route {path}"}

    def klines(self, q: dict[str, str]) -> tuple[int, Any]:
        self.kline_requests.append(q)
        if len(self.kline_requests) > self.max_requests:
            return 503, {"code": -1000, "msg": "request budget exhausted"}
        if self.fail_next_klines > 0:
            self.fail_next_klines -= 1
            return 429, {
                "code": -1003,
                "msg": "Too many requests; current limit is 1200 per minute.",
            }
        if self.die_after_pages is not None and self.pages_served >= self.die_after_pages:
            return 503, {"msg": "Service unavailable"}
        start = int(q.get("startTime", 0))
        limit = int(q.get("limit", 500))
        end = int(q["endTime"]) if "endTime" in q else None
        rows = []
        for c in self.candles:
            if c[0] < start or c[0] > self.now_ms or (end is not None and c[0] > end):
                continue
            row = list(c)
            if (
                c[0] + HOUR_MS > self.now_ms
            ):  # still forming: partial candle, as a real exchange serves it
                row[4] = row[1]
                row[5] = str(float(row[5]) / 3)
            rows.append(
                [
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[0] + HOUR_MS - 1,
                    "0",
                    100,
                    "0",
                    "0",
                    "0",
                ]
            )
            if len(rows) >= limit:
                break
        self.pages_served += 1
        return 200, rows


def _market(base: str, quote: str) -> dict[str, Any]:
    return {
        "symbol": base + quote,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "1000000.00",
                "tickSize": "0.01",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001",
                "maxQty": "9000.0",
                "stepSize": "0.00001",
            },
        ],
        "permissions": ["SPOT"],
        "permissionSets": [["SPOT"]],
    }
