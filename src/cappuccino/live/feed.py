"""Where the paper runner's bars come from: a replay of stored bars or the live market.

Both give the runner, for each closed bar, the market arrays (prices and causal features
through the offline pipeline, :func:`~cappuccino.datasets.market.build_market_arrays`), the
bar's index in them and the price the runner sizes its orders at:

- :class:`ReplayFeed`: the stored bars of a period, with the features computed once over the
  whole store exactly as ``cappuccino backtest`` computes them (every feature at bar ``t``
  uses bars up to ``t`` only, so computing them once equals computing them bar by bar). The
  orders are sized at the next bar's open, where the simulated broker fills them: the
  backtest's sizing.
- :class:`LiveFeed`: waits until each bar has closed (its end plus a grace, by the data
  exchange's clock), fetches it through the same download code as ``cappuccino data
  download`` (which never keeps the open candle) into the store, and computes the features
  on a bounded recent window of ``history_bars`` stored bars. Orders are sized at the close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import polars as pl

from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import MarketArrays, build_market_arrays

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedBar:
    """One closed bar for the runner: ``data`` holds it at index ``t``; ``last``: the final
    bar of a replay (valued, not traded on)."""

    data: MarketArrays
    t: int
    reference_price: npt.NDArray[np.float64]  # (A,) the price orders are sized at
    last: bool = False

    @property
    def bar(self) -> datetime:
        return self.data.datetime_at(self.t)


class ReplayFeed:
    """Bars ``first .. last`` (indices into ``data``) of stored data; ``bar_delay_s`` paces
    the replay (demos, fault tests)."""

    kind = "replay"

    def __init__(
        self, data: MarketArrays, first: int, last: int, *, bar_delay_s: float = 0.0
    ) -> None:
        if not 0 <= first < last < data.n_bars:
            raise ValueError(
                f"replay: bars [{first}, {last}], expected 0 <= first < last < {data.n_bars}"
            )
        self.data, self.first, self.last = data, first, last
        self.bar_delay_s = bar_delay_s

    def bars(
        self, after: datetime | None, heartbeat: Callable[[], None] | None = None
    ) -> Iterator[ClosedBar]:
        """The bars after ``after`` (a resumed session's last processed bar)."""
        start = self.first
        if after is not None:
            start = max(start, self.data.index_of(after, default=0, side="right"))
        for t in range(start, self.last + 1):
            if self.bar_delay_s > 0 and t > start:
                time.sleep(self.bar_delay_s)
            last = t == self.last
            price = self.data.close[t] if last else self.data.open[t + 1]
            yield ClosedBar(self.data, t, np.asarray(price, dtype=np.float64), last)

    def bar_close(self, bar: ClosedBar) -> datetime:
        """When ``bar`` closed (the replay clock)."""
        return bar.bar + timedelta(milliseconds=self.data.timeframe.ms)


class _Pending:
    """The store as the download code sees it, with writes kept for later: the last stored
    bar is the window's, and an upsert only collects the validated bars."""

    def __init__(self, store: ParquetStore, frame: pl.DataFrame) -> None:
        self.store, self.frame = store, frame
        self.frames: list[pl.DataFrame] = []

    def last_timestamp(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        mine = self.frame.filter(pl.col("symbol") == symbol)["timestamp"]
        got = [f.filter(pl.col("symbol") == symbol)["timestamp"] for f in self.frames]
        times = [cast(datetime, x.max()) for x in [mine, *got] if x.len()]
        return max(times) if times else self.store.last_timestamp(symbol, timeframe)

    def upsert(self, frame: pl.DataFrame, timeframe: Timeframe) -> list[Any]:
        from cappuccino.data.store import UpsertResult

        self.frames.append(frame)
        return [UpsertResult(symbol=str(frame["symbol"][0]), timeframe=timeframe.label,
                             rows_new=frame.height, rows_updated=0, rows_conflicting_kept=0,
                             rows_stored=frame.height, written=False)]  # fmt: skip

    def read_symbol(self, symbol: str, timeframe: Timeframe) -> pl.DataFrame:
        return self.frame.filter(pl.col("symbol") == symbol)

    def require_real(self, source: str) -> None:
        """Live bars are real: a store of synthetic bars refuses them."""
        self.store.require_real(source)


class LiveFeed:
    """Closed bars of ``symbols`` as they happen (see the module docstring).

    Args:
        store: the Parquet store the bars are appended to (and read back from).
        exchange: a ccxt exchange for the candles (``make_exchange``).
        history_bars: the bounded window the features are computed on (it must cover the
            feature set's warm-up plus the policy's lookback).
        grace_s: how long after a bar's end to fetch it (exchanges publish late).
        sleep, heartbeat_every_s: the wait (tests pass a fake sleep); the runner beats while
            it waits.
    """

    kind = "live"

    def __init__(
        self, *, store: Path, exchange: Any, exchange_id: str, symbols: tuple[str, ...],
        timeframe: Timeframe, feature_set: str | None, history_bars: int, grace_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep, heartbeat_every_s: float = 30.0,
        max_retries: int = 5, lookback: int = 1,
        on_frame: Callable[[Any], None] | None = None,
    ) -> None:  # fmt: skip
        self.store = ParquetStore(store)
        self.exchange, self.exchange_id = exchange, exchange_id
        self.symbols, self.timeframe, self.feature_set = tuple(symbols), timeframe, feature_set
        self.history_bars, self.grace_s = history_bars, grace_s
        self.sleep, self.heartbeat_every_s = sleep, heartbeat_every_s
        self.max_retries = max_retries
        self.lookback = lookback
        self.on_frame = on_frame  # hears each window's bars (a supervised bundle scores them)
        self._frame: pl.DataFrame | None = None  # the recent bars, in memory
        self._pending: list[pl.DataFrame] = []  # fetched, not yet in the store

    def now(self) -> datetime:
        """The data exchange's clock."""
        ms = self.exchange.fetch_time() if self.exchange.has.get("fetchTime") else None
        return datetime.fromtimestamp((ms or self.exchange.milliseconds()) / 1000, UTC)

    def bar_close(self, bar: ClosedBar) -> datetime:
        return bar.bar + timedelta(milliseconds=self.timeframe.ms)

    def _wait_until(self, when: datetime, heartbeat: Callable[[], None] | None) -> None:
        while True:
            left = (when - self.now()).total_seconds()
            if left <= 0:
                return
            if heartbeat is not None:
                heartbeat()
            self.sleep(min(left, self.heartbeat_every_s))

    def fetch(self, until: datetime) -> None:
        """Download every bar closed by ``until`` through the download code (validated, the
        open candle dropped), into the window held in memory; :meth:`flush` writes them to
        the store once the bar's orders are out (a crash before that loses nothing: the next
        start downloads them again)."""
        from cappuccino.data.download import download_ohlcv

        if self._frame is None:
            self._stored_last()
            self._frame = self.store.read_universe(self.timeframe, list(self.symbols))
        sink = _Pending(self.store, self._frame)
        download_ohlcv(
            sink, exchange_id=self.exchange_id, symbols=list(self.symbols),  # type: ignore[arg-type]
            timeframe=self.timeframe, until=until, exchange=self.exchange,
            max_retries=self.max_retries,
        )  # fmt: skip
        if sink.frames:
            new = pl.concat(sink.frames, how="vertical_relaxed").select(self._frame.columns)
            self._pending.append(new)
            self._frame = pl.concat([self._frame, new.cast(self._frame.schema)])
        span = timedelta(milliseconds=self.timeframe.ms * (self.history_bars + 1))
        self._frame = self._frame.filter(pl.col("timestamp") > pl.col("timestamp").max() - span)

    def _stored_last(self) -> datetime:
        """The last bar every symbol has in the store; an error naming the symbols it lacks."""
        stored = [self.store.last_timestamp(s, self.timeframe) for s in self.symbols]
        missing = [s for s, t in zip(self.symbols, stored, strict=True) if t is None]
        if missing:
            raise ValueError(
                f"--store {self.store.root}: no {self.timeframe} bars of {missing}; download "
                f"their history first (cappuccino data download --since ...)"
            )
        return min(t for t in stored if t is not None)

    def check_history(self) -> None:
        """Before anything reaches the network: the store holds every symbol, and its last
        ``history_bars`` bars leave the policy's lookback after the features' warm-up. The
        bars read become the window :meth:`fetch` starts from."""
        last = self._stored_last()
        frame = self.store.read_universe(self.timeframe, list(self.symbols))
        self._frame = frame
        start = last - timedelta(milliseconds=self.timeframe.ms * (self.history_bars - 1))
        window = frame.filter(pl.col("timestamp").is_between(start, last))
        try:
            n = build_market_arrays(window, self.feature_set, self.timeframe).n_bars
        except ValueError:  # the warm-up takes the whole window
            n = 0
        if n < self.lookback:
            raise ValueError(
                f"--history-bars: got {self.history_bars}, which leaves {n} bars after the "
                f"features' warm-up; the policy reads {self.lookback} (raise --history-bars)"
            )

    def flush(self) -> None:
        """Append the bars fetched since the last flush to the store (validated upserts)."""
        while self._pending:
            self.store.upsert(self._pending[0], self.timeframe)
            self._pending.pop(0)

    def window(self, bar: datetime) -> ClosedBar:
        """The bounded window of bars ending at ``bar``, through the pipeline."""
        tf = self.timeframe
        assert self._frame is not None
        start = bar - timedelta(milliseconds=tf.ms * (self.history_bars - 1))
        frame = self._frame.filter(pl.col("timestamp").is_between(start, bar))
        data = build_market_arrays(frame, self.feature_set, tf)
        if self.on_frame is not None:
            self.on_frame(frame)
        t = data.n_bars - 1
        if data.n_bars < self.lookback:
            raise ValueError(
                f"--history-bars {self.history_bars}: {data.n_bars} bars left after the "
                f"features' warm-up, the policy reads {self.lookback}; raise --history-bars"
            )
        if data.datetime_at(t) != bar:
            raise ValueError(
                f"live feed: the newest aligned bar is {data.datetime_at(t).isoformat()}, "
                f"expected {bar.isoformat()} (a symbol's bar is missing at the exchange)"
            )
        return ClosedBar(data, t, np.asarray(data.close[t], dtype=np.float64), False)

    def bars(
        self, after: datetime | None, heartbeat: Callable[[], None] | None = None
    ) -> Iterator[ClosedBar]:
        """Every bar after ``after`` as it closes; forever (the runner stops it)."""
        tf = timedelta(milliseconds=self.timeframe.ms)
        now = self.now()
        newest = datetime.fromtimestamp(now.timestamp() // tf.total_seconds()
                                        * tf.total_seconds(), UTC) - tf  # fmt: skip
        bar = newest if after is None else max(after + tf, newest)
        if after is not None and after + tf < newest:
            log.warning("live feed: bars %s .. %s closed while the runner was stopped; "
                        "trading resumes at the newest closed bar", after + tf, newest - tf)  # fmt: skip
        try:
            while True:
                close = bar + tf
                self._wait_until(close + timedelta(seconds=self.grace_s), heartbeat)
                self.fetch(close)
                yield self.window(bar)
                self.flush()  # the runner has processed the bar: store it off the critical path
                bar += tf
        finally:
            self.flush()
