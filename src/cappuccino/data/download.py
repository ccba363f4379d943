"""Exchange download through ccxt (the ``[live]`` extra): incremental, resumable, closed candles only.

- **Incremental**: a symbol with stored bars resumes at the bar after its last real
  stored bar; ``since`` is needed only for a first download.
- **Resumable**: every page is validated and upserted (atomically) before the next
  request, so an interrupted run loses at most the page in flight.
- **Closed candles only**: the exchange's clock (``fetch_time``) decides; a bar whose
  end is after "now" is still forming and is dropped (counted).
- **Rate limits**: ccxt's own throttle is on (``enableRateLimit``); rate-limit and
  network errors are retried with exponential backoff up to ``max_retries`` times
  (counted), then raised: never skipped.
- ``base_url`` replaces the scheme and host of every API URL (tests point it at a
  loopback server; also proxies/mirrors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from cappuccino.config.secrets import exchange_credentials
from cappuccino.data.readers._table import LINE, canonical_columns
from cappuccino.data.readers.base import RawBars
from cappuccino.data.schema import Timeframe, normalize_symbol
from cappuccino.data.store import ParquetStore
from cappuccino.data.validate import clean_bars

log = logging.getLogger(__name__)

# Spot candles only: skip loading futures markets (extra requests, other hosts), and the
# currencies list (a private call ccxt makes once keys are set; candles and spot orders do
# not need it).
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    }
}


@dataclass
class DownloadResult:
    """What one symbol's download did (bars unless named)."""

    symbol: str
    timeframe: str
    start: str
    pages: int
    rows_fetched: int
    rows_new: int
    open_candle_dropped: int
    duplicates_removed: int
    retries: int
    rows_stored: int
    last: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rebase(value: Any, base: str) -> Any:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        b = urlsplit(base)
        u = urlsplit(value)
        return urlunsplit((b.scheme, b.netloc, u.path, u.query, u.fragment))
    if isinstance(value, dict):
        return {k: _rebase(v, base) for k, v in value.items()}
    return value


def import_ccxt() -> Any:
    """The ccxt module, or an ImportError that names the extra to install."""
    try:
        import ccxt
    except ImportError as exc:
        raise ImportError(
            "exchange access needs ccxt, which is not installed: pip install 'cappuccino[live]'"
        ) from exc
    return ccxt


def make_exchange(
    exchange_id: str, *, base_url: str | None = None, options: dict[str, Any] | None = None
) -> Any:
    """A ccxt exchange with rate limiting on, credentials from the environment, optional host override."""
    ccxt = import_ccxt()
    cls = getattr(ccxt, exchange_id, None)
    if cls is None:
        raise ValueError(
            f"exchange: got {exchange_id!r}, expected a ccxt exchange id such as 'binance'"
        )
    opts = {**DEFAULT_OPTIONS.get(exchange_id, {}), **(options or {})}
    ex = cls({"enableRateLimit": True, "options": opts, **exchange_credentials(exchange_id)})
    if base_url:
        ex.urls["api"] = _rebase(ex.urls["api"], base_url)
    return ex


def _page_to_raw(rows: list[list[Any]], symbol: str, source: str) -> RawBars:
    """ccxt OHLCV rows ``[ms, open, high, low, close, volume]`` as reader output (no quote
    volume or trade count in ccxt's unified candles; floats at full precision)."""
    frame = pl.DataFrame(
        [r[:6] for r in rows],
        schema={
            "_ts_ms": pl.Int64,
            **dict.fromkeys(("open", "high", "low", "close", "volume"), pl.Float64),
        },
        orient="row",
    ).with_row_index(LINE, offset=1)
    out = frame.with_columns(pl.col(LINE).cast(pl.Int64)).select(
        canonical_columns(
            symbol=pl.lit(symbol),
            has_quote_volume=False,
            has_trades=False,
            volume_decimals=pl.lit(15),
        )
    )
    return RawBars(frame=out, source=source, rows_read=out.height)


def download_ohlcv(
    store: ParquetStore,
    *,
    exchange_id: str = "binance",
    symbols: list[str],
    timeframe: Timeframe,
    since: datetime | None = None,
    until: datetime | None = None,
    base_url: str | None = None,
    exchange: Any = None,
    page_limit: int = 1000,
    max_retries: int = 5,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DownloadResult]:
    """Download closed ``timeframe`` candles of ``symbols`` into ``store``; see the module docstring."""
    ccxt = import_ccxt()

    if page_limit < 1 or max_retries < 0:
        raise ValueError(
            f"page_limit must be >= 1 and max_retries >= 0, got {page_limit}, {max_retries}"
        )
    store.require_real(f"{exchange_id} candles")
    ex = exchange or make_exchange(exchange_id, base_url=base_url)
    retryable = (
        ccxt.RateLimitExceeded,
        ccxt.DDoSProtection,
        ccxt.RequestTimeout,
        ccxt.ExchangeNotAvailable,
        ccxt.NetworkError,
    )
    retries = 0

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal retries
        for attempt in range(max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except retryable as exc:
                if attempt == max_retries:
                    raise
                retries += 1
                wait = min(backoff_s * 2**attempt, 60.0)
                log.warning(
                    "%s: %s; retry %d/%d in %.1f s",
                    exchange_id,
                    type(exc).__name__,
                    attempt + 1,
                    max_retries,
                    wait,
                )
                sleep(wait)
        raise AssertionError("unreachable")

    call(ex.load_markets)
    now_ms = int(call(ex.fetch_time)) if ex.has.get("fetchTime") else int(ex.milliseconds())
    end_ms = now_ms if until is None else min(now_ms, int(until.timestamp() * 1000))
    results = []
    for raw_symbol in symbols:
        symbol = normalize_symbol(raw_symbol)
        if symbol not in ex.markets:
            raise ValueError(f"symbol: got {raw_symbol!r}, not listed on {exchange_id}")
        retries = 0
        last = store.last_timestamp(symbol, timeframe)
        if last is not None:
            start_ms = int(last.timestamp() * 1000) + timeframe.ms
        elif since is not None:
            start_ms = int(since.timestamp() * 1000)
        else:
            raise ValueError(
                f"{symbol}: nothing stored yet; pass since= (--since) for the first download"
            )
        res = DownloadResult(
            symbol=symbol,
            timeframe=timeframe.label,
            start=datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(),
            pages=0,
            rows_fetched=0,
            rows_new=0,
            open_candle_dropped=0,
            duplicates_removed=0,
            retries=0,
            rows_stored=0,
            last=last.isoformat() if last else None,
        )
        cursor = start_ms
        while cursor + timeframe.ms <= end_ms:
            rows = call(ex.fetch_ohlcv, symbol, timeframe.label, since=cursor, limit=page_limit)
            res.pages += 1
            res.rows_fetched += len(rows)
            rows = [r for r in rows if r[0] >= cursor]
            closed = [r for r in rows if r[0] + timeframe.ms <= now_ms]
            res.open_candle_dropped += len(rows) - len(closed)
            closed = [r for r in closed if r[0] + timeframe.ms <= end_ms]
            if not closed:
                break
            clean = clean_bars(
                [_page_to_raw(closed, symbol, f"{exchange_id}:{symbol}")],
                timeframe=timeframe,
                on_gap="keep",
            )
            res.duplicates_removed += clean.reports[symbol].duplicates_removed
            (up,) = store.upsert(clean.frame, timeframe)
            res.rows_new += up.rows_new
            res.rows_stored = up.rows_stored
            newest = int(max(r[0] for r in closed))
            res.last = datetime.fromtimestamp(newest / 1000, UTC).isoformat()
            cursor = newest + timeframe.ms
        res.retries = retries
        if res.rows_stored == 0:
            res.rows_stored = store.read_symbol(symbol, timeframe).height
        results.append(res)
    return results
