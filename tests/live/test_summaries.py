"""The summaries the state keeps for monitors (migration 0003) equal the same figures
recomputed from the rows: after a random session written through the state's own API, and
after an 0002 file with rows is upgraded (the backfill), and as it is written on."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cappuccino.live.state import FillRow, SessionState

SYMBOLS = ["AAA/USDT", "BBB/USDT", "CCC/USDT"]
T0 = datetime(2021, 1, 1, tzinfo=UTC)
STATUSES = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED",
            "EXPIRED", "UNKNOWN")  # fmt: skip


def _write(st: SessionState, rng: random.Random, bars: range, px: dict[str, float]) -> None:
    """Bars of books, plans with skipped orders, order updates and fills (some twice)."""
    eq = 1e6
    for k in bars:
        bar = T0 + timedelta(hours=k)
        for s in SYMBOLS:
            px[s] *= 1 + rng.gauss(0, 0.02)
        eq *= 1 + rng.gauss(0, 0.01)
        st.record_book(bar, eq * 0.2, eq, {s: 1.0 for s in SYMBOLS}, prices=dict(px))
        st.record_book(bar, eq * 0.2, eq, {s: 1.0 for s in SYMBOLS}, prices=dict(px))  # again
        skipped = [{"symbol": "AAA/USDT", "side": "buy", "qty": 0.1, "reason": "min notional"}
                   for _ in range(rng.randrange(3))]  # fmt: skip
        _, intents = st.record_plan(bar, {s: 1.0 for s in SYMBOLS}, eq,
                                    [(s, 0, "buy", 1.0) for s in SYMBOLS[: rng.randrange(4)]],
                                    bar, skipped=skipped)  # fmt: skip
        for i in intents:
            for _ in range(rng.randrange(3)):
                st.update_orders([{"cid": i.client_order_id, "status": rng.choice(STATUSES),
                                   "now": bar, "reason": "r"}])  # fmt: skip
            if rng.random() < 0.6:
                fill = FillRow(trade_id=f"t{k}-{i.symbol}", client_order_id=i.client_order_id,
                               symbol=i.symbol, side="buy", qty=1.0, price=px[i.symbol],
                               fee=rng.uniform(0, 2), at=bar)  # fmt: skip
                st.record_fills([fill, fill])  # reported twice: stored once


def _check(path: Path) -> None:
    con = sqlite3.connect(path)
    got = dict(con.execute("SELECT status, n FROM order_counts WHERE n > 0"))
    assert got == dict(con.execute("SELECT status, COUNT(*) FROM orders GROUP BY status"))
    bars, fills, fees, skipped, mdd = con.execute(
        "SELECT bars, fills, fees, skipped, max_drawdown FROM summary").fetchone()  # fmt: skip
    n, fee_sum = con.execute("SELECT COUNT(*), COALESCE(SUM(fee), 0) FROM fills").fetchone()
    assert (fills, fees) == (n, pytest.approx(fee_sum, rel=1e-12, abs=1e-12))
    assert skipped == sum(
        len(json.loads(r[0])) for r in con.execute("SELECT skipped FROM decisions")
    )
    rows = con.execute("SELECT equity, prices, peak, bh, ew FROM equity ORDER BY bar").fetchall()
    assert bars == len(rows)
    e = np.array([r[0] for r in rows])
    p = np.array([[json.loads(r[1])[s] for s in SYMBOLS] for r in rows])
    peak = np.maximum.accumulate(e)
    assert np.allclose([r[2] for r in rows], peak, rtol=1e-14)
    assert mdd == pytest.approx((e / peak - 1).min(), rel=1e-12)
    assert np.allclose([r[3] for r in rows], (p / p[0]).mean(axis=1), rtol=1e-12)
    ew = np.cumprod(np.concatenate([[1.0], (p[1:] / p[:-1]).mean(axis=1)]))
    assert np.allclose([r[4] for r in rows], ew, rtol=1e-12)
    con.close()


def test_summaries_equal_the_rows_after_a_random_session(tmp_path: Path) -> None:
    st = SessionState(tmp_path / "s.db", "paper")
    st.start(run_id="r", broker="sim", policy="cash", symbols=SYMBOLS, timeframe="1h", now=T0)
    _write(st, random.Random(0), range(60), {s: 100.0 for s in SYMBOLS})
    st.engine.dispose()
    _check(tmp_path / "s.db")


def test_an_0002_file_is_backfilled_and_kept_right_afterwards(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from cappuccino.live.state import _alembic

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    cfg = _alembic()
    with engine.begin() as c:  # a file as the previous version wrote it
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0002")
    engine.dispose()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO run (id, mode, broker, policy, symbols, timeframe, created_at) "
                "VALUES ('r', 'paper', 'sim', 'cash', ?, '1h', '2021-01-01 00:00:00.000000')",
                (json.dumps(SYMBOLS),))  # fmt: skip
    rng = random.Random(1)
    px = {s: 50.0 for s in SYMBOLS}
    eq = 1e5
    for k in range(40):
        for s in SYMBOLS:
            px[s] *= 1 + rng.gauss(0, 0.03)
        eq *= 1 + rng.gauss(0, 0.02)
        bar = str((T0 + timedelta(hours=k)).replace(tzinfo=None))
        con.execute("INSERT INTO equity (bar, cash, equity, prices) VALUES (?, ?, ?, ?)",
                    (bar, 0.0, eq, json.dumps(px)))  # fmt: skip
        skipped = json.dumps([{"r": 1}] * (k % 3))
        con.execute("INSERT INTO decisions (bar, decided_at, target_units, equity, note, skipped) "
                    "VALUES (?, ?, '{}', ?, '', ?)", (bar, bar, eq, skipped))  # fmt: skip
        cid = f"c{k}"
        con.execute(
            "INSERT INTO intents VALUES (?, ?, 'AAA/USDT', 0, 'buy', 1.0, ?)", (cid, bar, bar)
        )
        con.execute("INSERT INTO orders (client_order_id, status, filled_qty, final, updated_at, "
                    "reason) VALUES (?, ?, 0, 1, ?, '')", (cid, rng.choice(STATUSES), bar))  # fmt: skip
        con.execute("INSERT INTO fills VALUES (?, ?, 'AAA/USDT', 'buy', 1.0, 1.0, ?, ?)",
                    (f"t{k}", cid, rng.uniform(0, 1), bar))  # fmt: skip
    con.commit()
    con.close()
    st = SessionState(path, "paper")  # opening upgrades to the head, backfilling
    _check(path)
    _write(st, random.Random(2), range(40, 70), dict(px))  # the triggers carry on from there
    st.engine.dispose()
    _check(path)
