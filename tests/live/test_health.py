"""Health of a paper session from its state file: each unhealthy condition on its own turns
it red with its reason; the check reads only, and never changes the file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cappuccino.live.state import SessionState
from cappuccino.market.timeframe import Timeframe
from cappuccino.monitoring.paper import session_status

H1 = Timeframe.parse("1h")


def check_health(path: Path, now: datetime, _timeframe: Timeframe) -> Any:
    """The health part of the session's status (the timeframe is the session's own)."""
    return SimpleNamespace(**session_status(path, now)["health"])


START = datetime(2021, 6, 1, 12, 0, 10, tzinfo=UTC)


def _session(path: Path, *, heartbeat: datetime | None, last_bar: datetime | None) -> Path:
    st = SessionState(path, "paper")
    st.start(run_id="r", broker="sim", policy="cash", symbols=["BTC/USDT"], timeframe="1h",
             now=START)  # fmt: skip
    if heartbeat is not None:
        st.heartbeat(heartbeat, last_bar)
    st.engine.dispose()
    return path


def test_a_live_session_is_healthy(tmp_path: Path) -> None:
    now = START + timedelta(hours=3)
    bar = datetime(2021, 6, 1, 14, tzinfo=UTC)  # the 14:00 bar closed at 15:00, processed
    path = _session(tmp_path / "s.db", heartbeat=now - timedelta(seconds=20), last_bar=bar)
    before = path.read_bytes()
    h = check_health(path, now, H1)
    assert h.healthy and h.reasons == [] and h.mode == "paper"
    assert (h.heartbeat_age_s, h.bar_lag_s) == (20.0, 3610.0)
    assert path.read_bytes() == before  # read-only


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "state file missing"),
        ("garbage", "state file unreadable"),
        ("foreign_sqlite", "state file unreadable"),
        ("not_started", "no session started"),
        ("no_heartbeat", "no heartbeat yet"),
        ("stale_heartbeat", "stale heartbeat: 300 s old, limit 120 s"),
        ("bar_behind", "is 10810 s behind, limit 7230 s (its close plus one 1h bar plus 30 s)"),
        ("no_bar_since_start", "no bar processed in the 10800 s since the session started"),
    ],
)
def test_each_unhealthy_condition_on_its_own(tmp_path: Path, case: str, reason: str) -> None:
    now = START + timedelta(hours=3)
    fresh, recent_bar = now - timedelta(seconds=5), datetime(2021, 6, 1, 14, tzinfo=UTC)
    path = tmp_path / "s.db"
    if case == "garbage":
        path.write_bytes(b"this is not a database, just bytes" * 10)
    elif case == "foreign_sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE studies (id INTEGER)")
        con.commit()
        con.close()
    elif case == "not_started":
        SessionState(path, "paper").engine.dispose()
    elif case == "no_heartbeat":
        _session(path, heartbeat=None, last_bar=None)
        now = START + timedelta(minutes=5)  # young enough not to be judged on its bars
    elif case == "stale_heartbeat":
        now = START + timedelta(minutes=30)
        _session(path, heartbeat=now - timedelta(seconds=300), last_bar=None)
    elif case == "bar_behind":
        _session(path, heartbeat=fresh, last_bar=recent_bar - timedelta(hours=2))
    elif case == "no_bar_since_start":
        _session(path, heartbeat=fresh, last_bar=None)
    h = check_health(path, now, H1)
    assert not h.healthy
    assert len(h.reasons) == 1 and reason in h.reasons[0], h.reasons


def test_a_naive_now_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naive"):
        check_health(tmp_path / "s.db", START.replace(tzinfo=None), H1)
