"""A fixed fake study and a fixed fake paper session, with every number known by hand.

Study ``ab`` (maximise ``val_pr_auc``), trials by number:

====  ========  ==============  =====  ============================================
 #    state     use_ft_encoder  value  notes
====  ========  ==============  =====  ============================================
 0    COMPLETE  True            0.30
 1    COMPLETE  False           0.10
 2    COMPLETE  True            0.50   best
 3    PRUNED    True            -
 4    COMPLETE  False           0.20
 5    FAIL      False           -      error "ValueError: boom"
 6    COMPLETE  True            0.40
 7    RUNNING   True            -      heartbeat 10 s old at NOW
 8    RUNNING   False           -      heartbeat 300 s old at NOW: stale (grace 120 s)
====  ========  ==============  =====  ============================================

Trial ``k`` starts at ``T0 + k`` minutes and (when finished) ends 30 s later.

Session (2 symbols, 1h bars, starting equity 1,000,000): closes AAA 100 -> 110 -> 121 and
BBB 10 -> 10 -> 5 at bars 09:00, 10:00, 11:00. Buy-and-hold = 1e6 x (1.21 + 0.5) / 2 =
855,000; equal weight = 1e6 x (1.1 + 1.0) / 2 x (1.1 + 0.5) / 2 = 840,000. Session equity
1,000,000 -> 1,050,000 -> 980,000: P&L -20,000, return -2%, drawdown now and at most
980,000 / 1,050,000 - 1 = -6.6667%. Orders: FILLED buy (fee 12.5), REJECTED sell
("insufficient balance"), one open ACCEPTED buy; one skipped order (notional below the minimum).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna

from cappuccino.live.state import FillRow, SessionState

NOW = datetime(2021, 6, 1, 12, 30, 0, tzinfo=UTC)  # session and study "now"
T0 = datetime(2021, 6, 1, 11, 40, 0)  # naive: study times as Optuna writes them (local = UTC)
VALUES = {0: 0.30, 1: 0.10, 2: 0.50, 4: 0.20, 6: 0.40}
FT = {0: True, 1: False, 2: True, 3: True, 4: False, 5: False, 6: True, 7: True, 8: False}
STATES = {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE", 3: "PRUNED", 4: "COMPLETE", 5: "FAIL",
          6: "COMPLETE", 7: "RUNNING", 8: "RUNNING"}  # fmt: skip
HEARTBEAT_AGE = {7: 10, 8: 300}


DIST = {"use_ft_encoder": optuna.distributions.CategoricalDistribution([False, True]),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}  # fmt: skip


def add_trial(url: str, value: float = 0.05) -> None:
    """One more COMPLETE trial (an FT arm)."""
    study = optuna.load_study(study_name="ab", storage=url)
    study.add_trial(optuna.trial.create_trial(params={"use_ft_encoder": True, "lr": 1e-3},
                                              distributions=DIST, value=value))  # fmt: skip


def make_study(path: Path) -> str:
    """The study of the module docstring in a SQLite file; its URL."""
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="ab", storage=url, direction="maximize",
                                load_if_exists=True)  # fmt: skip
    study.set_user_attr("config", {"kind": "supervised", "metric": "val_pr_auc",
                                   "storage": {"grace_period": 120}})  # fmt: skip
    dist = DIST
    for k in range(9):
        params = {"use_ft_encoder": FT[k], "lr": 1e-3 * (k + 1)}
        state = STATES[k]
        if state == "RUNNING":
            t = study.ask(dist)
            assert t.params == t.params  # sampled; overwritten below to the fixed values
        else:
            st = getattr(optuna.trial.TrialState, state)
            ft = optuna.trial.create_trial(
                params=params, distributions=dist, value=VALUES.get(k), state=st,
                intermediate_values={1: 0.05} if state == "PRUNED" else None,
                user_attrs={"error": "ValueError: boom"} if state == "FAIL" else
                {"bundle": f"runs/ab/trial_{k:04d}/bundle"} if state == "COMPLETE" else None,
            )  # fmt: skip
            study.add_trial(ft)
    con = sqlite3.connect(path)
    for k in range(9):
        start = T0 + timedelta(minutes=k)
        end = None if STATES.get(k) == "RUNNING" else start + timedelta(seconds=30)
        con.execute("UPDATE trials SET datetime_start = ?, datetime_complete = ? WHERE number = ?",
                    (str(start), None if end is None else str(end), k))  # fmt: skip
    for k, age in HEARTBEAT_AGE.items():
        tid = con.execute("SELECT trial_id FROM trials WHERE number = ?", (k,)).fetchone()[0]
        beat = NOW.replace(tzinfo=None) - timedelta(seconds=age)
        con.execute("INSERT OR REPLACE INTO trial_heartbeats (trial_id, heartbeat) VALUES (?, ?)",
                    (tid, str(beat)))  # fmt: skip
        con.execute("UPDATE trial_params SET param_value = ? WHERE trial_id = ? AND "
                    "param_name = 'use_ft_encoder'", (1.0 if FT[k] else 0.0, tid))  # fmt: skip
        con.execute("UPDATE trial_params SET param_value = ? WHERE trial_id = ? AND "
                    "param_name = 'lr'", (1e-3 * (k + 1), tid))  # fmt: skip
    con.commit()
    con.close()
    return url


BARS = [datetime(2021, 6, 1, h, tzinfo=UTC) for h in (9, 10, 11)]
PRICES = [{"AAA/USDT": 100.0, "BBB/USDT": 10.0}, {"AAA/USDT": 110.0, "BBB/USDT": 10.0},
          {"AAA/USDT": 121.0, "BBB/USDT": 5.0}]  # fmt: skip
EQUITY = [1_000_000.0, 1_050_000.0, 980_000.0]


def make_session(path: Path, *, heartbeat_age_s: float = 20.0, last_bar: datetime | None = None,
                 ended: bool = False) -> Path:  # fmt: skip
    """The session of the module docstring at NOW = 12:30: its last processed bar is 11:00
    (it closed at 12:00 and was decided at 12:00:05) unless ``last_bar`` says otherwise."""
    st = SessionState(path, "paper")
    start = NOW - timedelta(hours=3)
    st.start(run_id="run-fixed", broker="alpaca", policy="runs/demo/rl/bundle",
             symbols=["AAA/USDT", "BBB/USDT"], timeframe="1h", now=start)  # fmt: skip
    st.set_starting_account(1_000_000.0, 1_000_000.0, {})
    for bar, px, eq in zip(BARS, PRICES, EQUITY, strict=True):
        st.record_book(bar, eq - 500_000.0, eq, {"AAA/USDT": 1000.0, "BBB/USDT": 0.0}, prices=px)
    created, intents = st.record_plan(
        BARS[2], {"AAA/USDT": 5000.0, "BBB/USDT": 10000.0}, EQUITY[2],
        [("AAA/USDT", 0, "sell", 2.0), ("AAA/USDT", 1, "buy", 10.0), ("BBB/USDT", 1, "buy", 100.0)],
        BARS[2] + timedelta(hours=1, seconds=5),
        skipped=[{"symbol": "BBB/USDT", "side": "sell", "qty": 0.5,
                  "reason": "notional 5.00 below min_order_notional 10"}],
    )  # fmt: skip
    assert created
    sell, buy, open_ = intents
    at = BARS[2] + timedelta(hours=1, seconds=6)
    st.update_orders([
        {"cid": sell.client_order_id, "status": "REJECTED", "now": at,
         "reason": "insufficient balance"},
        {"cid": buy.client_order_id, "status": "FILLED", "now": at, "filled_qty": 10.0,
         "avg_price": 125.0, "broker_order_id": "b-1"},
        {"cid": open_.client_order_id, "status": "ACCEPTED", "now": at, "broker_order_id": "b-2"},
    ])  # fmt: skip
    st.record_fills([FillRow(trade_id="t-1", client_order_id=buy.client_order_id,
                             symbol="AAA/USDT", side="buy", qty=10.0, price=125.0, fee=12.5,
                             at=at)])  # fmt: skip
    bar = last_bar if last_bar is not None else BARS[2]
    st.heartbeat(NOW - timedelta(seconds=heartbeat_age_s), bar,
                 {"ok": True, "bar": bar.isoformat(), "at": at.isoformat(), "differences": []})  # fmt: skip
    if ended:
        st.end(NOW - timedelta(seconds=heartbeat_age_s), "replay finished")
    st.engine.dispose()
    return path
