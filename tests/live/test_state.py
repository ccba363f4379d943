"""The paper-trading state file: migrated schema in WAL mode, intents committed before the
submit and durable through kill -9, idempotent fills and decisions, one mode per file."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy.exc

from cappuccino.live.state import SessionState, StateError, client_order_id, head_revision

BAR = datetime(2021, 6, 1, 12, tzinfo=UTC)
NOW = datetime(2021, 6, 1, 13, 0, 5, tzinfo=UTC)


def _started(path: Path, mode: str = "paper") -> SessionState:
    st = SessionState(path, mode)  # type: ignore[arg-type]
    st.start(run_id="r1", broker="sim", policy="cash", symbols=["BTC/USDT", "ETH/USDT"],
             timeframe="1h", now=NOW)  # fmt: skip
    return st


def test_a_new_file_is_migrated_to_head_in_wal_mode(tmp_path: Path) -> None:
    _started(tmp_path / "s.db")
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"run", "decisions", "intents", "orders", "fills", "positions", "equity"} <= tables
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)


def test_client_order_ids_are_deterministic_and_fit_every_broker() -> None:
    cid = client_order_id("r1", BAR, "BTC/USDT", 0)
    assert cid == client_order_id("r1", BAR.astimezone(UTC), "BTC/USDT", 0)
    assert len(cid) == 35 and re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", cid)  # Binance's rule
    others = {
        client_order_id("r2", BAR, "BTC/USDT", 0),
        client_order_id("r1", BAR + timedelta(hours=1), "BTC/USDT", 0),
        client_order_id("r1", BAR, "ETH/USDT", 0),
        client_order_id("r1", BAR, "BTC/USDT", 1),
    }
    assert len(others) == 4 and cid not in others  # fmt: skip
    with pytest.raises(ValueError, match="naive"):
        client_order_id("r1", BAR.replace(tzinfo=None), "BTC/USDT", 0)


def test_an_intent_is_recorded_once_with_a_pending_order(tmp_path: Path) -> None:
    st = _started(tmp_path / "s.db")
    a = st.record_intent(BAR, "BTC/USDT", 0, "buy", 0.5, NOW)
    b = st.record_intent(BAR, "BTC/USDT", 0, "buy", 0.5, NOW + timedelta(seconds=9))
    assert a.client_order_id == b.client_order_id == client_order_id("r1", BAR, "BTC/USDT", 0)
    assert b.created_at == NOW  # the first one, unchanged
    ((intent, order),) = st.orders()
    assert (intent.qty, order.status, order.final) == (0.5, "PENDING", False)
    assert st.unresolved() == [a.client_order_id]
    with pytest.raises(ValueError, match="expected buy/sell and > 0"):
        st.record_intent(BAR, "ETH/USDT", 0, "buy", 0.0, NOW)


def test_an_intent_survives_kill_9_right_after_it_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _started(path)
    code = (
        "import os, signal; from datetime import datetime, UTC;"
        "from cappuccino.live.state import SessionState;"
        f"st = SessionState({str(path)!r}, 'paper');"
        "bar = datetime(2021, 6, 1, 12, tzinfo=UTC);"
        "st.record_intent(bar, 'ETH/USDT', 0, 'sell', 2.0, datetime.now(UTC));"
        "os.kill(os.getpid(), signal.SIGKILL)"  # the submit would come next
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    ((intent, order),) = SessionState(path, "paper").orders()
    assert (intent.symbol, intent.side, intent.qty, order.status) == ("ETH/USDT", "sell", 2.0,
                                                                      "PENDING")  # fmt: skip


def test_a_final_order_never_changes_and_fills_are_stored_once(tmp_path: Path) -> None:
    st = _started(tmp_path / "s.db")
    cid = st.record_intent(BAR, "BTC/USDT", 0, "buy", 1.0, NOW).client_order_id
    st.update_order(cid, "UNKNOWN", NOW)  # the submit timed out
    assert st.unresolved() == [cid]
    st.update_order(cid, "FILLED", NOW, broker_order_id="b-1", filled_qty=1.0, avg_price=35e3)
    after = st.update_order(cid, "CANCELED", NOW, filled_qty=0.0)  # a late, stale report
    assert (after.status, after.filled_qty, after.final) == ("FILLED", 1.0, True)
    assert st.unresolved() == []
    assert st.record_fill("t-1", cid, "BTC/USDT", "buy", 0.4, 35e3, 14.0, NOW) is True
    assert st.record_fill("t-1", cid, "BTC/USDT", "buy", 0.4, 35e3, 14.0, NOW) is False
    assert st.record_fill("t-2", cid, "BTC/USDT", "buy", 0.6, 35e3, 21.0, NOW) is True
    assert [f.qty for f in st.fills(cid)] == [0.4, 0.6]
    with pytest.raises(StateError, match="unknown order"):
        st.record_fill("t-3", "cap-nope", "BTC/USDT", "buy", 1.0, 1.0, 0.0, NOW)
    with pytest.raises(ValueError, match="status: got 'DONE'"):
        st.update_order(cid, "DONE", NOW)


def test_one_decision_per_bar_and_the_starting_account_is_kept(tmp_path: Path) -> None:
    st = _started(tmp_path / "s.db")
    assert st.record_decision(BAR, {"BTC/USDT": 0.1}, 1000.0, NOW) is True
    assert st.record_decision(BAR, {"BTC/USDT": 9.9}, 5.0, NOW) is False
    d = st.decision(BAR)
    assert d is not None and d.target_units == {"BTC/USDT": 0.1} and d.bar == BAR  # aware UTC
    st.set_starting_account(1000.0, 1000.0)
    st.set_starting_account(5.0, 5.0)  # a resume reads the account again: never overwritten
    run = st.run()
    assert run is not None and (run.starting_cash, run.starting_equity) == (1000.0, 1000.0)
    st.record_book(BAR, 900.0, 1001.5, {"BTC/USDT": 0.1})
    st.record_book(BAR, 900.0, 1001.5, {"BTC/USDT": 0.1})  # idempotent
    assert st.positions() == {"BTC/USDT": 0.1}
    st.heartbeat(NOW, last_bar=BAR)
    run = st.run()
    assert run is not None and (run.heartbeat_at, run.last_bar) == (NOW, BAR)


def test_a_state_file_serves_one_mode_and_one_session(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _started(path, "paper")
    with pytest.raises(StateError, match="got a paper session's state, expected a dry_run one"):
        SessionState(path, "dry_run")
    st = SessionState(path, "paper")
    with pytest.raises(StateError, match=r"symbols: got \['BTC/USDT'\], expected"):
        st.start(run_id="r1", broker="sim", policy="cash", symbols=["BTC/USDT"],
                 timeframe="1h", now=NOW)  # fmt: skip
    resumed = st.start(run_id="other", broker="sim", policy="cash",
                       symbols=["BTC/USDT", "ETH/USDT"], timeframe="1h", now=NOW)  # fmt: skip
    assert resumed.id == "r1"  # the session in the file goes on under its own id


def test_a_file_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _started(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    with pytest.raises(StateError, match="schema revision '9999'"):
        SessionState(path, "paper")


def test_naive_times_are_refused_at_the_edge(tmp_path: Path) -> None:
    st = _started(tmp_path / "s.db")
    with pytest.raises(sqlalchemy.exc.StatementError, match="got naive 2021-06-01T12:00:00"):
        st.record_decision(BAR.replace(tzinfo=None), {}, 1.0, NOW)
    assert st.decision(BAR) is None  # nothing was written
