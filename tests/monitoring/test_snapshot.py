"""The status snapshot of a fixed fake study and session: hand-computed numbers, a golden
JSON file for the rest, each health rule on its own, and read-only access.

The golden files are regenerated with ``CAPPUCCINO_UPDATE_GOLDEN=1 pytest tests/monitoring``
(then read the diff: every change in them is a change in what users see)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cappuccino.live.state import BROKER_DOWN, BROKER_UP, SessionState
from cappuccino.monitoring import status
from cappuccino.monitoring.paper import session_status
from tests.monitoring.fixtures import BARS, NOW, VALUES, make_session, make_study

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixtures write study times as Optuna does, in local time: make local time UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _stable(doc: Any, root: Path) -> Any:
    """The snapshot with this run's temporary directory replaced by a placeholder."""
    text = json.dumps(doc, sort_keys=True, default=str).replace(str(root), "<tmp>")
    return json.loads(text)


def _golden(name: str, doc: Any) -> None:
    path = GOLDEN / name
    if os.environ.get("CAPPUCCINO_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert doc == expected, f"{name} differs from the golden file (see the module docstring)"


def test_study_numbers_match_the_hand_computed_ones(tmp_path: Path) -> None:
    url = make_study(tmp_path / "study.db")
    snap = status([url], machine=False, now=NOW)
    assert snap.status == "amber"  # trial 8's heartbeat is 300 s old, grace 120 s
    (s,) = snap.studies
    assert s["counts"] == {"COMPLETE": 5, "FAIL": 1, "PRUNED": 1, "RUNNING": 2}
    assert s["finished"] == 7 and s["pruned_share"] == pytest.approx(1 / 7)
    assert s["best"]["trial"] == 2 and s["best"]["value"] == 0.50
    assert [t["trial"] for t in s["top_trials"]] == [2, 6, 0, 4, 1]
    assert s["top_trials"][0]["params"] == {"use_ft_encoder": True, "lr": pytest.approx(3e-3)}
    assert s["top_trials"][0]["seconds"] == 30.0
    assert s["rate"]["last_hour"] == 7
    assert s["rate"]["overall_per_hour"] == pytest.approx(7 / (6.5 / 60))
    assert s["failures"] == {"count": 1, "newest": [{"trial": 5, "reason": "ValueError: boom"}]}
    assert [(r["trial"], r["heartbeat_age_s"], r["stale"]) for r in s["running"]] == [
        (7, 10.0, False), (8, 300.0, True)]  # fmt: skip
    arms = s["arms"]["use_ft_encoder"]
    ft, mlp = [VALUES[k] for k in (0, 2, 6)], [VALUES[k] for k in (1, 4)]
    assert arms["True"]["trials"] == 5 and arms["False"]["trials"] == 4
    assert arms["True"]["mean"] == pytest.approx(np.mean(ft))
    assert arms["False"]["median"] == pytest.approx(np.median(mlp))
    assert arms["True"]["q25"] == pytest.approx(np.quantile(ft, 0.25))
    assert sorted(arms["True"]["values"]) == pytest.approx(sorted(ft))
    assert s["history"]["best"] == [0.3, 0.3, 0.5, 0.5, 0.5]
    assert "trial 8: heartbeat 300 s old, limit 120 s" in snap.reasons[0]


def test_session_numbers_match_the_hand_computed_ones(tmp_path: Path) -> None:
    path = make_session(tmp_path / "s.db")
    doc = session_status(path, NOW)
    assert doc["health"]["status"] == "ok", doc["health"]
    pnl = doc["pnl"]
    assert pnl["equity"] == 980_000.0 and pnl["pnl"] == -20_000.0
    assert pnl["return"] == pytest.approx(-0.02)
    assert pnl["drawdown"] == pytest.approx(980 / 1050 - 1) == pnl["max_drawdown"]
    assert pnl["benchmarks"]["buy_and_hold"]["equity"] == pytest.approx(855_000.0)
    assert pnl["benchmarks"]["equal_weight"]["equity"] == pytest.approx(840_000.0)
    d = doc["last_decision"]
    # weights at the 11:00 close: 5000 x 121 / 0.98e6 and 10000 x 5 / 0.98e6
    assert d["target_weights"] == pytest.approx({"AAA/USDT": 5000 * 121 / 0.98e6,
                                                 "BBB/USDT": 10000 * 5 / 0.98e6})  # fmt: skip
    assert doc["fees"] == 12.5 and doc["fills"] == 1
    assert doc["orders"] == {"total": 3, "by_status": {"ACCEPTED": 1, "FILLED": 1, "REJECTED": 1}}
    assert [(o["symbol"], o["status"]) for o in doc["open_orders"]] == [("BBB/USDT", "ACCEPTED")]
    assert doc["open_orders"][0]["age_s"] == 1795.0  # decided at 12:00:05, now 12:30
    assert [o["reason"] for o in doc["rejected"]] == ["insufficient balance"]
    assert doc["skipped_count"] == 1 and doc["skipped"][0]["bar"] == BARS[2].isoformat()
    assert doc["positions"]["verified"] is True
    with_series = session_status(path, NOW, series=True)["series"]
    assert with_series["equal_weight"] == pytest.approx([1e6, 1.05e6, 0.84e6])
    assert with_series["buy_and_hold"] == pytest.approx([1e6, 1.05e6, 0.855e6])


def test_snapshot_matches_the_golden_file(tmp_path: Path) -> None:
    url = make_study(tmp_path / "study.db")
    state = make_session(tmp_path / "s.db")
    doc = status([url], [state], machine=False, now=NOW).to_dict()
    assert doc.pop("build_ms") > 0
    _golden("snapshot.json", _stable(doc, tmp_path))
    from cappuccino.monitoring import report

    r = report.build(doc)
    _golden("status_report.json", _stable({k: v for k, v in r.items() if k != "snapshot"},
                                          tmp_path))  # fmt: skip


def _inject(case: str, path: Path) -> None:
    if case == "stale_heartbeat":  # older than 3 bars and than 4 beats
        make_session(path, heartbeat_age_s=3 * 3600 + 1)
    elif case == "bar_behind":  # last processed bar closed 2 bars ago: > 1 bar + grace
        make_session(path, last_bar=BARS[0] - timedelta(hours=1))
    elif case == "reconciliation":
        make_session(path)
        st = SessionState(path, "paper")
        st.set_reconcile({"ok": False, "bar": BARS[1].isoformat(),
                          "differences": ["AAA/USDT: broker holds 990, fills imply 1000"]})  # fmt: skip
        st.engine.dispose()
    elif case == "broker_unreachable":
        make_session(path)
        st = SessionState(path, "paper")
        st.event(NOW - timedelta(seconds=30), BROKER_DOWN, "alpaca: 503 three times")
        st.engine.dispose()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("stale_heartbeat", "stale heartbeat: 10801 s old, limit 120 s"),
        ("bar_behind", "is 16200 s behind, limit 7230 s"),
        ("reconciliation", "reconciliation at bar 2021-06-01T10:00:00+00:00 found differences"),
        ("broker_unreachable", "broker unreachable since 2021-06-01T12:29:30+00:00: alpaca"),
    ],
)
def test_each_health_rule_on_its_own_turns_the_status_red(
    tmp_path: Path, case: str, reason: str
) -> None:
    path = tmp_path / "s.db"
    _inject(case, path)
    snap = status(states=[path], machine=False, now=NOW)
    h = snap.paper[0]["health"]
    assert snap.status == "red" and h["status"] == "red"
    assert len(h["reasons"]) == 1 and reason in h["reasons"][0], h["reasons"]


def test_a_clean_end_is_stopped_not_red_and_a_later_reach_clears_an_outage(tmp_path: Path) -> None:
    path = make_session(tmp_path / "s.db", heartbeat_age_s=7 * 3600, ended=True)
    assert status(states=[path], machine=False, now=NOW).status == "ok"
    assert session_status(path, NOW)["health"]["status"] == "stopped"
    fresh = make_session(tmp_path / "b.db")
    st = SessionState(fresh, "paper")
    st.event(NOW - timedelta(seconds=60), BROKER_DOWN, "timeout")
    st.event(NOW - timedelta(seconds=30), BROKER_UP, "answered")
    st.engine.dispose()
    assert session_status(fresh, NOW)["health"]["status"] == "ok"


def test_readers_never_write_or_lock(tmp_path: Path) -> None:
    url = make_study(tmp_path / "study.db")
    state = make_session(tmp_path / "s.db")
    before = {p: p.read_bytes() for p in (tmp_path / "study.db", state)}
    con = sqlite3.connect(tmp_path / "study.db")  # a writer holding the write lock
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE studies SET study_name = study_name")
    try:
        snap = status([url], [state], machine=False, now=NOW)
    finally:
        con.rollback()
        con.close()
    assert snap.studies and snap.paper[0]["health"]["status"] == "ok"
    assert {p: p.read_bytes() for p in before} == before
    missing = status(states=[tmp_path / "none.db"], machine=False, now=NOW)
    assert missing.status == "red" and missing.paper[0]["health"]["reasons"] == [
        "state file missing"]  # fmt: skip
    assert not (tmp_path / "none.db").exists()


def test_a_storage_that_is_not_optuna_is_refused_with_one_line(tmp_path: Path) -> None:
    from cappuccino.monitoring.studies import StorageError

    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(StorageError, match="not an Optuna storage"):
        status([f"sqlite:///{db}"], machine=False)
    with pytest.raises(StorageError, match="no such file"):
        status([f"sqlite:///{tmp_path / 'absent.db'}"], machine=False)
    assert not (tmp_path / "absent.db").exists()


def test_a_long_lived_reader_sees_what_a_fresh_one_sees(tmp_path: Path) -> None:
    """The dashboard's reader keeps finished trials' params between snapshots: after a new
    trial and a running trial that completes, it agrees with a reader opened afresh."""
    import optuna

    from cappuccino.monitoring.studies import StudyReader
    from tests.monitoring.fixtures import add_trial

    url = make_study(tmp_path / "study.db")
    live = StudyReader(url)
    before = live.snapshot(NOW)[0]
    add_trial(url, 0.9)
    study = optuna.load_study(study_name="ab", storage=url)
    running = next(t for t in study.get_trials() if t.state.name == "RUNNING")
    study.tell(running.number, 0.45)
    after = live.snapshot(NOW)[0]
    fresh = StudyReader(url).snapshot(NOW)[0]
    assert after["arms"] == fresh["arms"] != before["arms"]
    assert after["arms"]["use_ft_encoder"]["True"]["complete"] == 3 + 1 + (running.params[
        "use_ft_encoder"] is True)  # fmt: skip
    live.close()
