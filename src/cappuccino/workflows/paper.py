"""``cappuccino paper``: assemble a session (policy, market rules, feed, broker, state) and
run it; read a session's state for ``paper status`` and ``paper orders``.

The policy and its market rules are chosen exactly as ``cappuccino backtest`` chooses them
(a bundle's rules, or the defaults for a benchmark, then ``--fee``), and a replay's window
is the backtest's window (:func:`~cappuccino.workflows.backtest.period_window`), so a replay
session and a backtest of the same policy, period and fees are the same computation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cappuccino.data.schema import Timeframe, normalize_symbol
from cappuccino.live.broker import Broker
from cappuccino.live.feed import LiveFeed, ReplayFeed
from cappuccino.live.runner import PaperRunner, RunSummary
from cappuccino.live.sim import SimBroker, book_path
from cappuccino.live.state import SessionState
from cappuccino.live.symbols import SymbolMap
from cappuccino.market import MarketRules
from cappuccino.policies import Policy, benchmark_policy

log = logging.getLogger(__name__)

DEFAULT_HISTORY_BARS = 4000
"""The live feed's bounded feature window. Measured on the sample (3 symbols, 21 bars
checked): ``cappuccino14`` gives the full-history observation bit for bit from 500 bars;
``price_action14`` and ``nn23`` carry an EMA-200, which needs about 3,000 bars to forget
where the window starts (relative differences 3e-5 at 1,000 bars, 6e-14 at 3,000); at
4,000 what is left are ~1e-11 relative differences of TA-Lib's running sums."""


@dataclass
class PaperSettings:
    """One ``paper run``'s options (see the CLI's help for each)."""

    policy: str
    broker: str
    state: Path
    store: Path | None = None
    symbols: list[str] | None = None
    timeframe: str = "1h"
    replay: tuple[datetime, datetime] | None = None
    bar_delay_s: float = 0.0
    fee: str | None = None
    max_bars: int | None = None
    symbol_map: list[str] = field(default_factory=list)
    live: bool = False
    broker_url: str | None = None
    data_exchange: str = "binance"
    data_url: str | None = None
    history_bars: int = DEFAULT_HISTORY_BARS
    grace_s: float = 10.0
    allow_version_mismatch: bool = False
    cash_buffer: float | None = None  # None: 0 for the sim broker, 1 % for a real one


@dataclass
class ResolvedPolicy:
    policy: Policy
    name: str  # what the state records
    symbols: tuple[str, ...]
    feature_set: str | None
    rules: MarketRules
    timeframe: str | None = None  # the bundle's
    signals: BundleSignals | None = None  # a supervised bundle's policy (needs the bars)


class BundleSignals:
    """A supervised bundle's buy signals as a policy: at :meth:`bind`, the bundle scores the
    windows of the bars it is given (``frame``: the store's bars in a replay, the live feed's
    bounded window live) through ``cappuccino predict``'s code, and the signals trade as in
    the bundle's own signal backtest (:class:`~cappuccino.policies.SignalPolicy`: equal slots,
    held ``hold_bars``)."""

    lookback = 1

    def __init__(self, bundle: Any, hold_bars: int) -> None:
        self.bundle, self.hold_bars = bundle, hold_bars
        self.name = str(bundle.meta["model"])
        self.frame: Any = None  # set by the session before each bind
        self._inner: Any = None

    def set_frame(self, frame: Any) -> None:
        self.frame = frame

    def bind(self, data: Any) -> None:
        import polars as pl

        from cappuccino.policies import SignalPolicy
        from cappuccino.workflows.supervised import predict

        if self.frame is None:
            raise ValueError(f"policy {self.name}: no bars to score")
        frame = self.frame.filter(pl.col("symbol").is_in(list(data.symbols)))
        preds = predict(self.bundle, frame, since=data.datetime_at(0))
        self._inner = SignalPolicy.from_predictions(self.name, preds, data.symbols,
                                                    data.timeframe.ms, self.hold_bars)  # fmt: skip
        self._inner.bind(data)

    def decide(self, view: Any) -> Any:
        return self._inner.decide(view)


def resolve_policy(
    spec: str, symbols: list[str] | None, fee: str | None, *, allow_version_mismatch: bool = False
) -> ResolvedPolicy:
    """A bundle directory or a benchmark spec, with ``cappuccino backtest``'s rules."""
    from pydantic import ValidationError

    from cappuccino.bundles import load_policy
    from cappuccino.bundles.io import read_meta_any
    from cappuccino.bundles.supervised import FORMAT as SUPERVISED

    chosen = [normalize_symbol(s) for s in symbols] if symbols else None
    if (Path(spec) / "bundle.json").is_file() and read_meta_any(Path(spec)).get(
        "format"
    ) == SUPERVISED:
        out = _supervised(Path(spec), chosen, allow_version_mismatch)
    elif Path(spec).is_dir():
        b = load_policy(Path(spec), allow_version_mismatch=allow_version_mismatch)
        if chosen and chosen != list(b.symbols):
            raise ValueError(f"--symbols {chosen} differ from the bundle's symbols "
                             f"{list(b.symbols)}")  # fmt: skip
        out = ResolvedPolicy(b.policy, str(Path(spec).resolve()), b.symbols, b.feature_set,
                             b.rules, b.timeframe)  # fmt: skip
    else:
        if not chosen:
            raise ValueError("--symbols: a benchmark policy needs the universe (--symbols ...)")
        syms = tuple(sorted(chosen))
        out = ResolvedPolicy(benchmark_policy(spec, syms), spec, syms, None, MarketRules())
    if fee is not None:
        try:
            out.rules = out.rules.with_fee(fee)
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"--fee: got {fee!r}, expected a rate in [0, 0.05] such as 0.001 "
                             "or 0.1%") from exc  # fmt: skip
    return out


def _supervised(path: Path, chosen: list[str] | None, allow: bool) -> ResolvedPolicy:
    """A supervised bundle with the rules and holding period of its own signal backtest."""
    from cappuccino.bundles.supervised import load_bundle
    from cappuccino.config.supervised import SignalBacktestSettings
    from cappuccino.features.labels import parse_label
    from cappuccino.workflows.supervised import label_horizon

    b = load_bundle(path, allow_version_mismatch=allow)
    meta = b.meta
    symbols = tuple(meta["symbols"])
    if chosen and chosen != list(symbols):
        raise ValueError(f"--symbols {chosen} differ from the bundle's symbols {list(symbols)}")
    bt = SignalBacktestSettings.model_validate((meta.get("config") or {}).get("backtest") or {})
    hold = bt.hold_bars or label_horizon(parse_label(meta["label"]["spec"]))
    sig = BundleSignals(b, hold)
    return ResolvedPolicy(sig, str(path.resolve()), symbols, str(meta["feature_set"]),
                          bt.market, str(meta["timeframe"]), sig)  # fmt: skip


def check_bundle_matches(rp: ResolvedPolicy, timeframe: str, history_bars: int | None) -> None:
    """Refuse a run whose timeframe or feature window cannot serve the bundle (the live
    feed checks the window after the features' warm-up against the store)."""
    if rp.timeframe is not None and rp.timeframe != timeframe:
        raise ValueError(f"--timeframe: got {timeframe!r}, the bundle was trained on "
                         f"{rp.timeframe!r}")  # fmt: skip
    need = rp.policy.lookback + 1
    if history_bars is not None and history_bars < need:
        raise ValueError(f"--history-bars: got {history_bars}, expected >= {need} (more than "
                         f"the policy's lookback {rp.policy.lookback})")  # fmt: skip


def make_broker(s: PaperSettings, symbols: tuple[str, ...], rules: MarketRules) -> Broker:
    """``sim``, ``alpaca`` or ``ccxt:EXCHANGE``; keys only from the environment."""
    smap = SymbolMap.parse(symbols, s.symbol_map)
    if s.broker == "sim":
        if s.live:
            raise ValueError("--live: the simulated broker has no live endpoint")
        return SimBroker(symbols, rules, book=book_path(s.state))
    if s.broker == "alpaca":
        from cappuccino.live.alpaca import AlpacaBroker

        return AlpacaBroker.from_env(smap, live=s.live, url=s.broker_url)
    kind, _, exchange = s.broker.partition(":")
    if kind == "ccxt" and exchange:
        from cappuccino.live.exchange import CcxtBroker

        return CcxtBroker.from_env(exchange, smap, live=s.live, url=s.broker_url)
    raise ValueError(f"--broker: got {s.broker!r}, expected sim, alpaca or ccxt:EXCHANGE "
                     "(e.g. ccxt:binance)")  # fmt: skip


def build_runner(s: PaperSettings) -> PaperRunner:
    """Everything a session needs, validated before the state file is touched."""
    from cappuccino.datasets.market import load_market
    from cappuccino.workflows.backtest import period_window

    tf = Timeframe.parse(s.timeframe)
    if s.bar_delay_s < 0 or not math.isfinite(s.bar_delay_s):
        raise ValueError(f"--bar-delay: got {s.bar_delay_s!r}, expected seconds >= 0")
    if s.max_bars is not None and s.max_bars < 1:
        raise ValueError(f"--max-bars: got {s.max_bars}, expected >= 1")
    rp = resolve_policy(s.policy, s.symbols, s.fee,
                        allow_version_mismatch=s.allow_version_mismatch)  # fmt: skip
    if s.store is None:
        raise ValueError("--store: the bars' store folder is needed (replay and live)")
    if s.replay is not None:
        check_bundle_matches(rp, tf.label, None)
        data = load_market(s.store, tf.label, list(rp.symbols), rp.feature_set)
        if rp.signals is not None:
            from cappuccino.data.store import ParquetStore

            rp.signals.frame = ParquetStore(s.store).read_universe(tf, list(rp.symbols))
        window, first, notes = period_window(data, s.replay[0], s.replay[1], rp.policy.lookback)
        for n in notes:
            log.warning("--replay: %s", n)
        feed: Any = ReplayFeed(window, first, window.n_bars - 1, bar_delay_s=s.bar_delay_s)
    else:
        from cappuccino.data.download import make_exchange

        check_bundle_matches(rp, tf.label, s.history_bars)
        ex = make_exchange(s.data_exchange, base_url=s.data_url)
        feed = LiveFeed(store=s.store, exchange=ex, exchange_id=s.data_exchange,
                        symbols=rp.symbols, timeframe=tf, feature_set=rp.feature_set,
                        history_bars=s.history_bars, grace_s=s.grace_s,
                        lookback=rp.policy.lookback,
                        on_frame=None if rp.signals is None else rp.signals.set_frame)  # fmt: skip
        feed.check_history()
    broker = make_broker(s, rp.symbols, rp.rules)
    state = SessionState(s.state, broker.mode)  # type: ignore[arg-type]
    buffer = s.cash_buffer if s.cash_buffer is not None else (0.0 if s.broker == "sim" else 0.01)
    return PaperRunner(state=state, broker=broker, feed=feed, policy=rp.policy,
                       policy_name=rp.name, symbols=rp.symbols, timeframe=tf.label,
                       rules=rp.rules, max_bars=s.max_bars, cash_buffer=buffer)  # fmt: skip


def run_paper(s: PaperSettings) -> RunSummary:
    return build_runner(s).run()


# -- reading a session -----------------------------------------------------------------------
def _open_read(path: Path) -> SessionState:
    """The state file, read-only (never migrated, never locked)."""
    if Path(path).is_dir():
        raise ValueError(f"--state: {path}: is a directory, expected a session's state file")
    if not Path(path).is_file():
        raise ValueError(f"--state: {path} does not exist")
    return SessionState.reader(path)


def session_orders(path: Path) -> list[dict[str, Any]]:
    """``paper orders``: every order with its client order id, bar, symbol, side, quantity,
    status and fills."""
    st = _open_read(path)
    fills: dict[str, list[dict[str, Any]]] = {}
    for f in st.fills():
        fills.setdefault(f.client_order_id, []).append(
            {"trade_id": f.trade_id, "qty": f.qty, "price": f.price, "fee": f.fee,
             "at": f.at.isoformat()}
        )  # fmt: skip
    out = []
    for i, o in st.orders():
        out.append({
            "client_order_id": i.client_order_id, "bar": i.bar.isoformat(), "symbol": i.symbol,
            "side": i.side, "qty": i.qty, "status": o.status, "filled_qty": o.filled_qty,
            "avg_price": o.avg_price, "broker_order_id": o.broker_order_id, "reason": o.reason,
            "fills": fills.get(i.client_order_id, []),
        })  # fmt: skip
    st.engine.dispose()
    return out
