"""The paper runner: one decision per closed bar, every order recorded before it is sent.

Per bar (from a :mod:`~cappuccino.live.feed`):

1. The broker hears of the bar (the simulated broker fills the previous bar's orders at its
   open).
2. **Reconciliation** (:meth:`PaperRunner.reconcile`): orders not yet final are looked up
   by client order id, the broker's executions are recorded (idempotent by trade id), open
   orders of earlier bars are cancelled (the cancel counts once the broker reports a final
   state), and the broker's positions and cash are compared with the ones the recorded fills
   imply. A difference no named repair explains stops the runner (:class:`ReconcileError`,
   exit 1) before it trades.
3. The book (cash, positions, equity at the bar's close) is recorded.
4. The policy decides from a :class:`~cappuccino.policies.MarketView` of the broker's
   account, exactly as in the backtest; :func:`cappuccino.market.plan_orders` turns the
   target into sell and buy quantities under the session's market rules (minimum notional,
   caps, stop-loss, cash).
5. The decision and its intents (client order id from run, bar, symbol and leg) are
   committed in one transaction, then each order is submitted: sells first. A submit whose
   outcome is unknown (timeout, 5xx, dropped connection) leaves the order ``UNKNOWN``; it
   is looked up by its client order id, never sent blindly again.
6. The heartbeat and the last processed bar are written: a restart resumes after it. A
   restart inside a bar finds that bar's decision and submits only what the broker does not
   already hold.

Dry runs (the simulated broker) and paper/live runs keep separate state files.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import torch

from cappuccino.live.broker import (
    FINAL_STATES,
    Broker,
    BrokerOrder,
    BrokerUnavailable,
    DuplicateOrder,
    OrderRejected,
    OrderRequest,
    SubmitUncertain,
    Trade,
)
from cappuccino.live.feed import ClosedBar
from cappuccino.live.state import BROKER_DOWN, BROKER_UP, FillRow, SessionState
from cappuccino.market import MarketRules, Portfolio, plan_orders
from cappuccino.market.timeframe import Timeframe
from cappuccino.policies import MarketView, Policy

log = logging.getLogger(__name__)

UNKNOWN_BARS = 3
"""An order the broker has not heard of for this many bars after its submit is EXPIRED."""
QTY_TOL = 1e-9
"""Relative tolerance of a position or cash comparison (float rounding at the broker)."""


KILL_ENV = "CAPPUCCINO_FAULT_KILL"
"""Fault injection for the restart tests: ``POINT:N`` makes the runner SIGKILL itself the
N-th time it reaches ``POINT`` (``before_intent``, ``after_intent``, ``after_submit``,
``after_ack``, ``after_fill``, ``bar``: a bar fully processed). Unset in normal use; nothing
else reads it."""


def checkpoint(point: str, _seen: dict[str, int] = {}) -> None:  # noqa: B006 (a counter)
    """Die here when :data:`KILL_ENV` names this point and its count (see there)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != point:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


class ReconcileError(RuntimeError):
    """The broker and the state disagree in a way no named repair explains."""


class Feed(Protocol):
    kind: str

    def bars(self, after: datetime | None, heartbeat: Callable[[], None] | None = None) -> Any: ...

    def bar_close(self, bar: ClosedBar) -> datetime: ...


@dataclass
class RunSummary:
    """What one ``paper run`` did (this invocation; ``orders_submitted`` counts its submits)."""

    run_id: str
    bars_processed: int = 0
    decisions: int = 0
    orders_submitted: int = 0
    final_equity: float | None = None
    final_cash: float | None = None
    first_bar: str | None = None
    last_bar: str | None = None
    ended: str | None = None
    repairs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "bars_processed": self.bars_processed,
            "decisions": self.decisions,
            "orders_submitted": self.orders_submitted,
            "final_equity": self.final_equity,
            "final_cash": self.final_cash,
            "period": {
                "start": self.first_bar,
                "end": self.last_bar,
                "convention": "bar open times, UTC; equity valued at each bar's close",
            },
            "ended": self.ended,
            "repairs": self.repairs,
        }


class PaperRunner:
    """Trade ``policy`` on ``feed``'s bars through ``broker``, recording into ``state``.

    Args:
        policy_name: what the state records as the policy (a bundle path or a benchmark spec).
        rules: the session's market rules (the bundle's, or the backtest's defaults).
        clock: the wall clock for heartbeats and records (a replay uses its own bar clock).
        max_bars: stop (cleanly, resumable) after this many bars.
        cash_buffer: the share of cash left unspent when sizing buys (orders sized at a close
            fill later at the broker's price; 0 for the simulated broker, whose fills are
            the sizing price).
        lookup_delays_s: the waits between look-ups of an order whose submit went unanswered.
    """

    def __init__(
        self, *, state: SessionState, broker: Broker, feed: Feed, policy: Policy,
        policy_name: str, symbols: tuple[str, ...], timeframe: str, rules: MarketRules,
        max_bars: int | None = None, clock: Callable[[], datetime] | None = None,
        lookup_delays_s: tuple[float, ...] = (0.2, 0.5, 1.0),
        sleep: Callable[[float], None] = time.sleep, cash_buffer: float = 0.0,
    ) -> None:  # fmt: skip
        if state.mode != broker.mode:
            raise ValueError(
                f"--state {state.path}: a {state.mode} state for a {broker.mode} broker"
            )
        self.state, self.broker, self.feed, self.policy = state, broker, feed, policy
        self.policy_name, self.symbols, self.timeframe = policy_name, tuple(symbols), timeframe
        self._tf_s = Timeframe.parse(timeframe).ms / 1000
        self.rules = rules
        if not 0.0 <= cash_buffer < 1.0:
            raise ValueError(f"--cash-buffer: got {cash_buffer!r}, expected a rate in [0, 1)")
        self.cash_buffer = cash_buffer
        self.max_bars = max_bars
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lookup_delays_s, self.sleep = lookup_delays_s, sleep
        self.min_notional = torch.tensor(
            rules.min_notional_per_asset(len(self.symbols)), dtype=torch.float64
        )
        self._bound: Any = None
        self._intents: dict[str, Any] = {}  # client order id -> intent, every bar
        self._n_decisions = 0
        self._decided: set[datetime] = set()
        self._trade_ids: set[str] = set()
        self._fill_units: dict[str, float] = {}
        self._fill_cash = 0.0
        self._newest_fill: datetime | None = None
        self._open: dict[str, str] = {}  # client order id -> status, orders not final
        self._outcome: dict[str, Any] | None = None
        self._updates: list[dict[str, Any]] = []
        self._snapshot: tuple[Any, Any] | None = None  # the bar's account and positions
        self._run: Any = None
        self._fresh: set[str] = set()  # intents created by this process (never submitted)
        self.summary = RunSummary(run_id="")

    # -- the session -------------------------------------------------------------------------
    def start(self) -> None:
        """Create or resume the session; a new session records the broker's account."""
        now = self.clock()
        existing = self.state.run()
        run = self.state.start(
            run_id=existing.id if existing else uuid.uuid4().hex, broker=self.broker.name,
            policy=self.policy_name, symbols=list(self.symbols), timeframe=self.timeframe,
            now=now, rules=self.rules.model_dump(mode="json"),
        )  # fmt: skip
        self.summary.run_id = run.id
        self._intents = {i.client_order_id: i for i in self.state.intents()}
        self._decided = self.state.decided_bars()
        self._n_decisions = len(self._decided)
        self._trade_ids = self.state.trade_ids()
        self._fill_units, self._fill_cash, self._newest_fill = self.state.fill_totals()
        self._open = {i.client_order_id: o.status for i, o in self.state.orders() if not o.final}
        if run.starting_equity is None:
            acct = self.broker.account()
            held = {s: p.qty for s, p in self.broker.positions().items()}
            self.state.set_starting_account(acct.cash, acct.equity, held)
            log.info("session %s: starting cash %.2f, equity %.2f", run.id, acct.cash,
                     acct.equity)  # fmt: skip
        else:
            log.info("session %s: resuming after bar %s", run.id, run.last_bar)
        self.state.heartbeat(now)
        self._run = self.state.run()

    def run(self) -> RunSummary:
        """Process bars until the feed ends or ``max_bars``; the state records the end."""
        try:
            self.start()
        except BrokerUnavailable as exc:
            self._broker_down(exc)
            raise
        run = self.state.run()
        assert run is not None
        reason = "feed ended"
        bars = self.feed.bars(run.last_bar, heartbeat=self._beat)
        down = self.state.broker_down()
        try:
            for done, bar in enumerate(bars, 1):
                try:
                    self.process(bar)
                except BrokerUnavailable as exc:
                    self._broker_down(exc)
                    raise
                if down:
                    self.state.event(self.clock(), BROKER_UP, f"answered at bar {bar.bar}")
                    down = False
                if bar.last:
                    reason = "replay finished"
                    break
                if self.max_bars is not None and done >= self.max_bars:
                    reason = f"--max-bars {self.max_bars} reached"
                    break
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into it by the command
            self.state.end(self.clock(), "stopped by a signal")
            self.summary.ended = "stopped by a signal"
            raise
        finally:
            bars.close()  # the live feed stores the bars it still holds
        self.state.end(self.clock(), reason)
        self.summary.ended = reason
        return self.summary

    def _broker_down(self, exc: BrokerUnavailable) -> None:
        """Record the outage for the health check (the runner stops; a restart that reaches
        the broker clears it)."""
        self.state.event(self.clock(), BROKER_DOWN, str(exc)[:2000])

    def _beat(self) -> None:
        self.state.heartbeat(self.clock())

    # -- one bar -----------------------------------------------------------------------------
    def process(self, cb: ClosedBar) -> None:
        """Steps 1-6 of the module docstring for one closed bar."""
        bar, data, t = cb.bar, cb.data, cb.t
        self.broker.on_bar(bar, data.open[t], data.close[t])
        with self.state.batch():  # reconciliation, the book and the plan: one commit
            outcome = self._reconcile(bar)
            self._flush()
            if not outcome["ok"]:
                intents: list[Any] = []
            else:
                pf = self.portfolio()
                close = torch.as_tensor(data.close[t], dtype=torch.float64).unsqueeze(0)
                equity = pf.equity(close)
                cash_f, eq_f = float(pf.cash[0]), float(equity[0])
                held = {s: float(pf.units[0, i]) for i, s in enumerate(self.symbols)}
                prices = {s: float(data.close[t, i]) for i, s in enumerate(self.symbols)}
                decided = (not cb.last) and bar in self._decided
                plan = None if cb.last or decided else self._plan(cb, pf, equity, close)
                self.state.record_book(bar, cash_f, eq_f, held, prices=prices)
                intents = self.state.intents(bar) if decided else []
                if plan is not None:
                    if plan[2]:
                        checkpoint("before_intent")
                    created, intents = self.state.record_plan(
                        bar, plan[0], plan[1], plan[2], self.clock(), note=plan[3],
                        skipped=plan[4],
                    )  # fmt: skip
                    if created:
                        self._fresh = {i.client_order_id for i in intents}
                        self.summary.decisions += 1
                        self._n_decisions += 1
                        self._decided.add(bar)
                    self._intents.update({i.client_order_id: i for i in intents})
                    self._open.update({i.client_order_id: "PENDING" for i in intents})
        if not outcome["ok"]:
            raise ReconcileError(
                f"reconciliation at bar {bar.isoformat()}: {'; '.join(outcome['differences'])}"
            )
        if outcome.get("new_fills"):
            checkpoint("after_fill")
        if intents and self._fresh:
            checkpoint("after_intent")
        if decided:
            log.info("bar %s: decided before the restart; resuming its %d orders", bar,
                     len(intents))  # fmt: skip
        with self.state.batch():  # the acks; a crash before this commit leaves PENDING orders,
            for intent in intents:  # which the next start looks up by client order id
                self._send(intent.client_order_id, intent.symbol, intent.side, intent.qty, bar)
            self._flush()
            self.state.heartbeat(self.clock(), last_bar=bar, reconcile=self._outcome)
        if intents:
            checkpoint("after_ack")
        s = self.summary
        s.bars_processed += 1
        s.final_equity, s.final_cash = eq_f, cash_f
        s.first_bar = s.first_bar or bar.isoformat()
        s.last_bar = bar.isoformat()
        checkpoint("bar")

    def portfolio(self) -> Portfolio:
        """The broker's account as a portfolio in the session's symbol order; entry prices
        from the broker (or from the recorded fills where it reports none). The account
        and positions the bar's reconciliation read (nothing was sent since)."""
        if self._snapshot is None:
            self._snapshot = (self.broker.account(), self.broker.positions())
        acct, pos = self._snapshot
        units = [pos[s].qty if s in pos else 0.0 for s in self.symbols]
        entry = [pos[s].avg_entry_price if s in pos else 0.0 for s in self.symbols]
        if any(u > 0 and e <= 0 for u, e in zip(units, entry, strict=True)):
            implied = self._entry_from_fills()
            entry = [e if e > 0 else implied.get(s, 0.0)
                     for s, e in zip(self.symbols, entry, strict=True)]  # fmt: skip
        f64 = torch.float64
        return Portfolio(
            cash=torch.tensor([acct.cash], dtype=f64),
            units=torch.tensor([units], dtype=f64),
            entry_price=torch.tensor([entry], dtype=f64),
        )

    def _entry_from_fills(self) -> dict[str, float]:
        qty: dict[str, float] = {}
        entry: dict[str, float] = {}
        for f in self.state.fills():
            q = qty.get(f.symbol, 0.0)
            if f.side == "buy":
                entry[f.symbol] = (q * entry.get(f.symbol, 0.0) + f.qty * f.price) / (q + f.qty)
                qty[f.symbol] = q + f.qty
            else:
                qty[f.symbol] = max(q - f.qty, 0.0)
                if qty[f.symbol] <= 0:
                    entry[f.symbol] = 0.0
        return entry

    def _plan(self, cb: ClosedBar, pf: Portfolio, equity: torch.Tensor,
              close: torch.Tensor) -> tuple[Any, ...]:  # fmt: skip
        """The policy's decision for bar ``cb`` and its orders (nothing recorded yet)."""
        if self._bound is not cb.data:
            self.policy.bind(cb.data)
            self._bound = cb.data
        price = torch.as_tensor(cb.reference_price, dtype=torch.float64).unsqueeze(0)
        view = MarketView(
            step=self._n_decisions, t=torch.tensor([cb.t]), portfolio=pf, equity=equity,
            close=close, fill_price=price,
        )  # fmt: skip
        target = self.policy.decide(view)
        sized = pf
        if self.cash_buffer > 0:  # buys sized at a close may fill higher: leave a margin
            sized = Portfolio(cash=pf.cash * (1.0 - self.cash_buffer), units=pf.units,
                              entry_price=pf.entry_price)  # fmt: skip
        sell, buy, stopped = plan_orders(sized, target, price, self.rules, self.min_notional)
        orders, skipped = self._orders(sell[0], buy[0], target[0], pf, price[0])
        note = ", ".join(f"stop-loss {s}" for i, s in enumerate(self.symbols)
                         if bool(stopped[0, i]))  # fmt: skip
        targets = {s: float(target[0, i]) for i, s in enumerate(self.symbols)}
        return targets, float(equity[0]), orders, note, skipped

    def _orders(
        self, sell: torch.Tensor, buy: torch.Tensor, target: torch.Tensor, pf: Portfolio,
        price: torch.Tensor,
    ) -> tuple[list[tuple[str, int, Any, float]], list[dict[str, Any]]]:  # fmt: skip
        """Sell legs (leg 0) then buy legs (leg 1), rounded to the broker's increments; the
        orders the rules or the increments left out, each with its reason."""
        orders: list[tuple[str, int, Any, float]] = []
        skipped: list[dict[str, Any]] = []
        units = pf.units[0]
        for leg, side, qty_t in ((0, "sell", sell), (1, "buy", buy)):
            for i, s in enumerate(self.symbols):
                want = float(qty_t[i])
                if want <= 0:
                    continue
                qty = self.broker.round_qty(s, want)
                if qty <= 0:
                    skipped.append({"symbol": s, "side": side, "qty": want,
                                    "reason": "below the broker's quantity increment"})  # fmt: skip
                    continue
                orders.append((s, leg, side, qty))
        min_n = self.min_notional
        for i, s in enumerate(self.symbols):
            delta = float(target[i].clamp_min(0.0) - units[i])
            notional = abs(delta) * float(price[i])
            if float(sell[i]) == 0.0 and float(buy[i]) == 0.0 and 0 < notional < float(min_n[i]):
                skipped.append({"symbol": s, "side": "buy" if delta > 0 else "sell",
                                "qty": abs(delta), "reason": f"notional {notional:.2f} below "
                                f"min_order_notional {float(min_n[i]):g}"})  # fmt: skip
        return orders, skipped

    # -- submits -----------------------------------------------------------------------------
    def _send(self, cid: str, symbol: str, side: str, qty: float, bar: datetime,
              again: bool = False) -> None:  # fmt: skip
        """Submit one intent unless the broker already holds it (see the module docstring)."""
        if cid not in self._fresh:  # a restart: the submit may have arrived
            if self._open.get(cid) not in ("PENDING", "UNKNOWN"):
                return
            found = self.broker.order(cid, symbol)
            if found is not None:
                self._update(found)
                return
        self._fresh.discard(cid)
        now = self.clock()
        try:
            ack = self.broker.submit(OrderRequest(cid, symbol, side, qty))
        except DuplicateOrder:
            self._resolve(cid, symbol, "the broker already holds this client order id")
            return
        except SubmitUncertain as exc:
            self._updates.append({"cid": cid, "status": "UNKNOWN", "now": now,
                                  "reason": f"submit: {exc}"})  # fmt: skip
            self._set_status(cid, "UNKNOWN")
            self.summary.orders_submitted += 1
            self._resolve(cid, symbol, str(exc), None if again else (side, qty, bar))
            return
        except OrderRejected as exc:
            self._updates.append({"cid": cid, "status": "REJECTED", "now": now,
                                  "reason": str(exc)})  # fmt: skip
            self._set_status(cid, "REJECTED")
            log.warning("order %s %s %s rejected: %s", side, qty, symbol, exc)
            return
        self.summary.orders_submitted += 1
        checkpoint("after_submit")
        self._update(ack)

    def _resolve(self, cid: str, symbol: str, why: str,
                 resend: tuple[str, float, datetime] | None = None) -> None:  # fmt: skip
        """Look an order up by client order id a few times; it stays UNKNOWN (resolved at the
        next bar's reconciliation) when the broker does not know it yet."""
        for delay in (0.0, *self.lookup_delays_s):
            if delay:
                self.sleep(delay)
            try:
                found = self.broker.order(cid, symbol)
            except (SubmitUncertain, BrokerUnavailable) as exc:
                log.warning("order %s: look-up failed (%s)", cid, exc)
                continue
            if found is not None:
                self._update(found)
                return
        if resend is not None:
            # the broker says, several times over, that it never got it: send it again under
            # the same client order id (a broker that did get it refuses the duplicate)
            log.warning("order %s: not at the broker after %d look-ups (%s); sent again with "
                        "the same client order id", cid, 1 + len(self.lookup_delays_s), why)  # fmt: skip
            self._send(cid, symbol, resend[0], resend[1], resend[2], again=True)
            return
        log.warning("order %s: outcome unknown (%s); looked up again next bar", cid, why)

    def _update(self, o: BrokerOrder) -> None:
        """What the broker says of an order, written with the current batch (see _flush)."""
        self._set_status(o.client_order_id, o.status)
        self._updates.append({"cid": o.client_order_id, "status": o.status, "now": self.clock(),
                              "broker_order_id": o.broker_order_id, "filled_qty": o.filled_qty,
                              "avg_price": o.avg_price, "reason": o.reason})  # fmt: skip

    def _set_status(self, cid: str, status: str) -> None:
        if status in FINAL_STATES:
            self._open.pop(cid, None)
        elif cid in self._open:
            self._open[cid] = status

    def _flush(self) -> None:
        self.state.update_orders(self._updates)
        self._updates = []

    # -- reconciliation ----------------------------------------------------------------------
    def reconcile(self, bar: datetime) -> dict[str, Any]:
        """Step 2 of the module docstring; the outcome is stored with the run and returned."""
        with self.state.batch():
            outcome = self._reconcile(bar)
            self._flush()
        if not outcome["ok"]:
            raise ReconcileError(
                f"reconciliation at bar {bar.isoformat()}: {'; '.join(outcome['differences'])}"
            )
        return outcome

    def _reconcile(self, bar: datetime) -> dict[str, Any]:
        now = self.clock()
        self._snapshot = None
        repairs: list[str] = []
        differences: list[str] = []
        intents = self._intents
        tf = timedelta(seconds=self._bar_seconds())
        unresolved = sorted(self._open)
        # 1. orders not final: their state at the broker
        for cid in unresolved:
            status = self._open[cid]
            found = self.broker.order(cid, intents[cid].symbol)
            if found is None and status not in ("PENDING", "UNKNOWN"):
                self.sleep(self.lookup_delays_s[0] if self.lookup_delays_s else 0.0)
                found = self.broker.order(cid, intents[cid].symbol)  # a miss is not an answer
            if found is not None:
                if status in ("PENDING", "UNKNOWN"):
                    repairs.append(f"resolved {cid}: {status} -> {found.status}")
                self._update(found)
                continue
            intent = intents[cid]
            if status in ("PENDING", "UNKNOWN"):
                age = (bar - intent.bar).total_seconds()
                tf_s = tf.total_seconds()
                if age >= UNKNOWN_BARS * tf_s or (status == "PENDING" and intent.bar < bar):
                    self._open.pop(cid, None)
                    self._updates.append({
                        "cid": cid, "status": "EXPIRED", "now": now,
                        "reason": f"not found at the broker by client order id {age / tf_s:.0f} "
                        "bars after its bar (never arrived)",
                    })  # fmt: skip
                    repairs.append(f"expired {cid}: the broker never received it")
                continue
            differences.append(
                f"order {cid} ({intent.side} {intent.qty:g} {intent.symbol}) was {status} "
                "and the broker no longer knows it"
            )
        # 2. executions
        run = self._run
        newest = self._newest_fill
        marks = [intents[c].bar for c in unresolved] + ([newest] if newest else [])
        if not marks and intents:
            marks = [min(i.bar for i in intents.values())]
        since = min(marks) - 3 * tf if marks else bar - 3 * tf
        trades = self.broker.trades_since(since)
        ours: list[Trade] = []
        foreign: list[Trade] = []
        for tr in trades:
            (ours if tr.client_order_id in intents else foreign).append(tr)
        if foreign:
            tr = foreign[0]
            differences.append(
                f"{len(foreign)} executions on the session's symbols that it did not order "
                f"(first: trade {tr.trade_id}, {tr.side} {tr.qty:g} {tr.symbol}); trade these "
                "symbols from one session only"
            )
        new_fills = self._record_fills(ours)
        # 3. open orders
        for o in self.broker.open_orders():
            intent = intents.get(o.client_order_id)
            if intent is None:
                differences.append(
                    f"open order {o.client_order_id} ({o.side} {o.qty:g} {o.symbol}) was not "
                    "placed by this session"
                )
            elif intent.bar < bar:
                after = self.broker.cancel(o.client_order_id, o.symbol)
                if after is not None and after.final:
                    self._update(after)
                    repairs.append(f"cancelled {o.client_order_id} of bar "
                                   f"{intent.bar.isoformat()}: {after.status}, "
                                   f"{after.filled_qty:g} filled")  # fmt: skip
                else:
                    repairs.append(f"cancel requested for {o.client_order_id}; confirmed at "
                                   "the next reconciliation")  # fmt: skip
        # fills again after cancels (a cancel may race a fill)
        if repairs:
            self._record_fills([tr for tr in self.broker.trades_since(since)
                                if tr.client_order_id in intents])  # fmt: skip
        # 4. positions and cash implied by the recorded fills
        expected_pos = dict(run.starting_positions or {})
        for s_, q in self._fill_units.items():
            expected_pos[s_] = expected_pos.get(s_, 0.0) + q
        cash = float(run.starting_cash or 0.0) + self._fill_cash
        positions = self.broker.positions()
        broker_pos = {s: p.qty for s, p in positions.items()}
        for s in self.symbols:
            want, got = expected_pos.get(s, 0.0), broker_pos.get(s, 0.0)
            if abs(want - got) > QTY_TOL * max(abs(want), abs(got), 1.0):
                differences.append(f"{s}: the broker holds {got:.10g}, the fills imply {want:.10g}")
        acct = self.broker.account()
        self._snapshot = (acct, positions)
        if abs(acct.cash - cash) > max(QTY_TOL * max(abs(cash), 1.0), 1e-6):
            differences.append(
                f"cash: the broker has {acct.cash:.10g}, the fills imply {cash:.10g}"
            )
        outcome = {"at": now.isoformat(), "bar": bar.isoformat(), "ok": not differences,
                   "repairs": repairs, "differences": differences}  # fmt: skip
        if new_fills:
            outcome["new_fills"] = new_fills
        if not differences:
            self._outcome = outcome  # written with the bar's heartbeat
        else:
            self.state.set_reconcile(outcome)
        for r in repairs:
            log.warning("reconcile: %s", r)
            self.state.event(now, "repair", r)
        self.summary.repairs.extend(repairs)
        if differences:
            self.state.event(now, "refused", "; ".join(differences))
        return outcome

    def _record_fills(self, trades: list[Trade]) -> int:
        """Store the trades not stored yet (by trade id) and keep the running totals; the
        number stored."""
        new = [tr for tr in trades if tr.trade_id not in self._trade_ids]
        if not new:
            return 0
        unique = list({tr.trade_id: tr for tr in new}.values())  # a fill reported twice
        self.state.record_fills([_fill_row(tr) for tr in unique])
        for tr in unique:
            self._trade_ids.add(tr.trade_id)
            sign = 1.0 if tr.side == "buy" else -1.0
            self._fill_units[tr.symbol] = self._fill_units.get(tr.symbol, 0.0) + sign * tr.qty
            self._fill_cash += -sign * tr.qty * tr.price - tr.fee
            if self._newest_fill is None or tr.at > self._newest_fill:
                self._newest_fill = tr.at
        return len(unique)

    def _bar_seconds(self) -> float:
        return self._tf_s


def _fill_row(tr: Trade) -> FillRow:
    return FillRow(trade_id=tr.trade_id, client_order_id=tr.client_order_id, symbol=tr.symbol,
                   side=tr.side, qty=tr.qty, price=tr.price, fee=tr.fee, at=tr.at)  # fmt: skip
