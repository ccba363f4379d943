"""Monitoring speed: one status snapshot of a study with 10,000 trials and a paper session
with 100,000 bars. Target: <= 200 ms.

Side by side in one process, interleaved, medians of ``--rounds``:

- **ours**: :func:`cappuccino.monitoring.status` of both from cold (machine left out; new
  connections, nothing cached), the refresh of a long-lived monitor (the dashboard's and
  ``monitor``'s case: finished trials' params are kept), and each part alone (the study
  through its aggregate SQL, the session through the summaries of migration 0003);
- **peers**: what the same numbers cost through the usual APIs: Optuna's
  ``load_study(...).get_trials()`` (optuna-dashboard and ``trials_dataframe`` start from
  it) and the session's ORM reads (``SessionState.reader``: equity rows, decisions, orders,
  fills), before any statistic is computed.

The study (10,000 trials: 70 % complete, 20 % pruned, 8 % failed with a reason, 2 running
with heartbeats; a categorical encoder arm, a categorical loss and two floats each) and
the session (100,000 hourly bars of 7 symbols, two orders and a fill per bar) are written
straight into their schemas once, in a temporary directory.

Usage: ``python -m benchmarks.monitoring [--rounds 7] [--trials 10000] [--bars 100000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna

from cappuccino.live.state import SessionState, _db_time, client_order_id
from cappuccino.monitoring import Monitor, status
from cappuccino.monitoring.paper import session_status
from cappuccino.monitoring.studies import StudyReader

SYMBOLS = ["ADA/USDT", "BNB/USDT", "BTC/USDT", "ETH/USDT", "LINK/USDT", "LTC/USDT", "XRP/USDT"]


def make_study(path: Path, n: int) -> str:
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="big", storage=url, direction="maximize")
    study.set_user_attr("config", {"kind": "supervised", "metric": "val_pr_auc",
                                   "storage": {"grace_period": 120}})  # fmt: skip
    sid = study._study_id
    del study
    rng = random.Random(0)
    enc = json.dumps({"name": "CategoricalDistribution", "attributes": {"choices": [False, True]}})
    loss = json.dumps({"name": "CategoricalDistribution",
                       "attributes": {"choices": ["bce", "weighted_bce", "focal"]}})  # fmt: skip
    lr = json.dumps({"name": "FloatDistribution",
                     "attributes": {"low": 1e-4, "high": 1e-2, "log": True, "step": None}})  # fmt: skip
    dr = json.dumps({"name": "FloatDistribution",
                     "attributes": {"low": 0.0, "high": 0.5, "log": False, "step": None}})  # fmt: skip
    t0 = datetime(2026, 1, 1)
    trials, params, values, attrs, beats = [], [], [], [], []
    for k in range(n):
        tid = k + 1
        u = rng.random()
        state = ("COMPLETE" if u < 0.70 else "PRUNED" if u < 0.90 else "FAIL" if u < 0.98
                 else "RUNNING")  # fmt: skip
        start = t0 + timedelta(seconds=30 * k)
        end = None if state == "RUNNING" else start + timedelta(seconds=25)
        trials.append((tid, k, sid, state, str(start), None if end is None else str(end)))
        params += [(tid, "use_ft_encoder", float(rng.random() < 0.5), enc),
                   (tid, "loss", float(rng.randrange(3)), loss),
                   (tid, "learning_rate", 10 ** rng.uniform(-4, -2), lr),
                   (tid, "dropout", rng.uniform(0, 0.5), dr)]  # fmt: skip
        if state == "COMPLETE":
            values.append((tid, 0, rng.gauss(0.55, 0.05), "FINITE"))
            attrs.append((tid, "bundle", json.dumps(f"runs/big/trial_{k:05d}/bundle")))
        elif state == "FAIL":
            attrs.append((tid, "error", json.dumps("RuntimeError: CUDA out of memory")))
        elif state == "RUNNING":
            beats.append((tid, str(datetime.now(UTC).replace(tzinfo=None))))
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO trials (trial_id, number, study_id, state, datetime_start, "
                    "datetime_complete) VALUES (?, ?, ?, ?, ?, ?)", trials)  # fmt: skip
    con.executemany("INSERT INTO trial_params (trial_id, param_name, param_value, "
                    "distribution_json) VALUES (?, ?, ?, ?)", params)  # fmt: skip
    con.executemany("INSERT INTO trial_values (trial_id, objective, value, value_type) "
                    "VALUES (?, ?, ?, ?)", values)  # fmt: skip
    con.executemany("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                    "VALUES (?, ?, ?)", attrs)  # fmt: skip
    con.executemany("INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?, ?)", beats)
    con.commit()
    con.close()
    return url


def make_session(path: Path, n: int) -> Path:
    st = SessionState(path, "paper")
    start = datetime(2015, 1, 1, tzinfo=UTC)
    st.start(run_id="big", broker="sim", policy="runs/demo/rl/bundle", symbols=SYMBOLS,
             timeframe="1h", now=start)  # fmt: skip
    st.set_starting_account(1e6, 1e6, {})
    st.engine.dispose()
    rng = random.Random(1)
    px = {s: 100.0 for s in SYMBOLS}
    equity, intents, orders, fills, decisions = [], [], [], [], []
    eq = 1e6
    for k in range(n):
        bar = start + timedelta(hours=k)
        for s in SYMBOLS:
            px[s] *= 1 + rng.gauss(0, 0.01)
        eq *= 1 + rng.gauss(0, 0.005)
        b = _db_time(bar)
        equity.append((b, 0.1 * eq, eq, json.dumps(px)))
        decisions.append((b, b, json.dumps({s: 1.0 for s in SYMBOLS}), eq, "", "[]"))
        for leg, s in enumerate(SYMBOLS[:2]):
            cid = client_order_id("big", bar, s, leg)
            intents.append((cid, b, s, leg, "buy", 1.0, b))
            orders.append((cid, f"b{k}-{leg}", "FILLED", 1.0, px[s], 1, b, ""))
            fills.append((f"t{k}-{leg}", cid, s, "buy", 1.0, px[s], 0.1, b))
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO equity (bar, cash, equity, prices) VALUES (?, ?, ?, ?)", equity)
    con.executemany("INSERT INTO decisions (bar, decided_at, target_units, equity, note, skipped) "
                    "VALUES (?, ?, ?, ?, ?, ?)", decisions)  # fmt: skip
    con.executemany("INSERT INTO intents (client_order_id, bar, symbol, leg, side, qty, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", intents)  # fmt: skip
    con.executemany("INSERT INTO orders (client_order_id, broker_order_id, status, filled_qty, "
                    "avg_price, final, updated_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    orders)  # fmt: skip
    con.executemany("INSERT INTO fills (trade_id, client_order_id, symbol, side, qty, price, fee, "
                    "at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", fills)  # fmt: skip
    last = _db_time(start + timedelta(hours=n - 1))
    con.execute("UPDATE run SET heartbeat_at = ?, last_bar = ?", (last, last))
    con.commit()
    con.close()
    return path


def _ms(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--bars", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        url = make_study(Path(tmp) / "study.db", a.trials)
        state = make_session(Path(tmp) / "session.db", a.bars)
        print(f"built {a.trials:,} trials and {a.bars:,} bars in {time.perf_counter() - t:.1f} s "
              f"({platform.processor() or platform.machine()})")  # fmt: skip
        reader = StudyReader(url)
        now = datetime.now(UTC)

        def optuna_trials() -> None:
            optuna.load_study(study_name="big", storage=url).get_trials(deepcopy=False)

        def orm_session() -> None:
            st = SessionState.reader(state)
            st.equity_rows(), st.decisions(), st.orders(), st.fills()
            st.engine.dispose()

        live = Monitor([url], [state], machine=False, rl_stats=False)
        live.snapshot()
        cases = {
            "ours: status(study + session)": lambda: status([url], [state], machine=False,
                                                            rl_stats=False),
            "ours: refresh of a long-lived monitor": live.snapshot,
            "ours: study alone": lambda: reader.snapshot(now),
            "ours: session alone (with plot series)": lambda: session_status(state, series=True),
            "peer: optuna get_trials()": optuna_trials,
            "peer: session ORM reads": orm_session,
        }  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(a.rounds):
            for name, fn in cases.items():
                times[name].append(_ms(fn))
        reader.close()
        live.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {a.rounds} interleaved rounds (ms):")
    for k, v in med.items():
        print(f"  {k:42s} {v:9.1f}")
    ours = med["ours: status(study + session)"]
    peers = med["peer: optuna get_trials()"] + med["peer: session ORM reads"]
    warm = med["ours: refresh of a long-lived monitor"]
    print(f"snapshot from cold {ours:.0f} ms, refresh {warm:.0f} ms (target <= 200 ms: "
          f"{'met' if ours <= 200 else 'NOT met'} from cold); the peers' reads alone take "
          f"{peers:.0f} ms: {peers / ours:.1f}x ours")  # fmt: skip


if __name__ == "__main__":
    main()
