"""``cappuccino paper run|status|orders`` as a user meets them: the JSON documents, each
unhealthy condition turning ``paper status`` red (exit 1) on its own, the refusals (exit 1
when reconciliation finds a difference, 2 for bad input, 3 for an unreachable broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.live.state import RunRow, SessionState
from tests.conftest import sample_store

from .fake_alpaca import FakeAlpaca

runner = CliRunner()
SYMBOLS = "BTC/USDT,ETH/USDT"
REPLAY = ["--replay", "2021-06-01", "2021-06-02"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_store(tmp_path_factory.mktemp("cli"))


def _paper(*args: str) -> Any:
    return runner.invoke(app, ["paper", *args])


def _doc(res: Any) -> dict[str, Any]:
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_run_then_status_and_orders_as_json(store: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.db")
    res = _paper("run", "--policy", "equal_weight:6", "--symbols", SYMBOLS, "--state", state,
                 "--store", str(store), *REPLAY, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = _doc(res)
    assert doc["bars_processed"] == 25 and doc["ended"] == "replay finished"
    assert doc["period"]["start"] == "2021-06-01T00:00:00+00:00"
    assert doc["period"]["end"] == "2021-06-02T00:00:00+00:00"
    assert doc["orders_submitted"] > 0 and doc["final_equity"] > 0
    st = _paper("status", "--state", state, "--json")
    assert st.exit_code == 0, st.output
    s = _doc(st)
    assert s["health"]["status"] == "stopped" and s["pnl"]["equity"] == doc["final_equity"]
    assert s["positions"]["verified"] is True and s["fees"] > 0
    assert set(s["pnl"]["benchmarks"]) == {"cash", "buy_and_hold", "equal_weight"}
    orders = _doc(_paper("orders", "--state", state, "--json"))["orders"]
    assert len(orders) == doc["orders_submitted"]
    assert all(o["status"] == "FILLED" and len(o["fills"]) == 1 for o in orders)
    assert all(len(o["client_order_id"]) == 35 for o in orders)
    text = _paper("status", "--state", state)
    assert text.exit_code == 0 and "STOPPED" in text.stdout and "verified" in text.stdout


def _live_session(path: Path, now: datetime) -> SessionState:
    st = SessionState(path, "paper")
    st.start(run_id="r", broker="alpaca", policy="cash", symbols=["BTC/USDT"], timeframe="1h",
             now=now - timedelta(minutes=10))  # fmt: skip
    return st


def _set(st: SessionState, **values: Any) -> None:
    with st.session() as s:
        s.execute(update(RunRow).values(**values))


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "state file missing"),
        ("unreadable", "state file unreadable"),
        ("no_heartbeat", "no heartbeat yet"),
        ("stale_heartbeat", "stale heartbeat"),
        ("stale_bar", "last processed bar"),
        ("reconcile", "reconciliation at bar"),
    ],
)
def test_each_unhealthy_condition_alone_turns_status_red(tmp_path: Path, case: str,
                                                          reason: str) -> None:  # fmt: skip
    now = datetime.now(UTC)
    path = tmp_path / "s.db"
    bar = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    if case == "unreadable":
        path.write_bytes(b"not a database at all" * 100)
    elif case != "missing":
        st = _live_session(path, now)
        if case != "no_heartbeat":
            st.heartbeat(now, last_bar=bar)
        if case == "stale_heartbeat":
            _set(st, heartbeat_at=now - timedelta(minutes=10))
        if case == "stale_bar":
            _set(st, last_bar=bar - timedelta(hours=3))
        if case == "reconcile":
            _set(st, reconcile={"ok": False, "bar": bar.isoformat(),
                                "differences": ["BTC/USDT: the broker holds 1"]})  # fmt: skip
    res = _paper("status", "--state", str(path), "--json")
    assert res.exit_code == 1, res.output
    doc = _doc(res)
    assert doc["health"]["status"] == "red"
    assert [r for r in doc["health"]["reasons"] if reason in r], doc["health"]["reasons"]
    assert len(doc["health"]["reasons"]) == 1  # the injected condition alone


def test_a_live_session_with_fresh_heartbeat_and_bar_is_ok(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    st = _live_session(tmp_path / "s.db", now)
    st.heartbeat(now, last_bar=now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))
    res = _paper("status", "--state", str(tmp_path / "s.db"), "--json")
    assert res.exit_code == 0 and _doc(res)["health"]["status"] == "ok"


def test_a_position_changed_behind_the_session_stops_it(store: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("APCA_API_KEY_ID", "key-id")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    state = str(tmp_path / "a.db")
    with FakeAlpaca(cash=10_000.0, prices={"BTC/USD": 1_000.0, "ETH/USD": 100.0}) as fake:
        args = ["run", "--broker", "alpaca", "--broker-url", fake.url, "--policy", "buy_and_hold",
                "--symbols", SYMBOLS, "--symbol-map", "BTC/USDT=BTC/USD,ETH/USDT=ETH/USD",
                "--state", state, "--store", str(store), *REPLAY]  # fmt: skip
        first = _paper(*args, "--max-bars", "3", "--json")
        assert first.exit_code == 0, first.output
        with fake.lock:  # someone sells half the BTC outside the session
            fake.positions["BTCUSD"] /= 2
        again = _paper(*args, "--json")
        assert again.exit_code == 1
        assert (
            "reconciliation at bar" in again.stderr and "BTC/USDT: the broker holds" in again.stderr
        )
        assert again.stdout == ""
        red = _paper("status", "--state", state, "--json")
        assert red.exit_code == 1 and "reconciliation" in red.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--replay", "2021-06-02", "2021-06-01"], "--replay: END 2021-06-01 is not after START"),
        (["--broker", "ib"], "--broker: got 'ib', expected sim, alpaca or ccxt:EXCHANGE"),
        (["--live"], "--live: the simulated broker has no live endpoint"),
        (["--bar-delay", "-1"], "--bar-delay: got -1.0, expected seconds >= 0"),
        (["--max-bars", "0"], "--max-bars: got 0, expected >= 1"),
        (["--fee", "10%"], "--fee: got '10%'"),
        (["--policy", "equal_weight:x"], "expected equal_weight:K"),
        (["--symbol-map", "BTC/USDT"], "--symbol-map: got 'BTC/USDT', expected MODEL=BROKER"),
    ],
)
def test_bad_options_exit_2_with_one_line(store: Path, tmp_path: Path, args: list[str],
                                          expected: str) -> None:  # fmt: skip
    base = {"--policy": "cash", "--symbols": SYMBOLS, "--state": str(tmp_path / "s.db"),
            "--store": str(store)}  # fmt: skip
    for k in [a for a in args if a.startswith("--")]:
        base.pop(k, None)
    flat = [x for kv in base.items() for x in kv]
    res = _paper("run", *flat, *(REPLAY if "--replay" not in args else []), *args)
    assert res.exit_code == 2, res.output
    assert expected in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()  # refused before any state was written


def test_alpaca_without_keys_and_an_unreachable_broker(store: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    args = ["run", "--broker", "alpaca", "--policy", "cash", "--symbols", SYMBOLS, "--state",
            str(tmp_path / "s.db"), "--store", str(store), *REPLAY]  # fmt: skip
    res = _paper(*args)
    assert res.exit_code == 2 and "set APCA_API_KEY_ID and APCA_API_SECRET_KEY" in res.stderr
    monkeypatch.setenv("APCA_API_KEY_ID", "key-id")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    res = _paper(*args, "--broker-url", "http://127.0.0.1:9")
    assert res.exit_code == 3 and "broker unreachable" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_state_file_serves_one_session_and_one_mode(store: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.db")
    ok = _paper("run", "--policy", "cash", "--symbols", SYMBOLS, "--state", state, "--store",
                str(store), *REPLAY, "--max-bars", "2")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    other = _paper("run", "--policy", "buy_and_hold", "--symbols", SYMBOLS, "--state", state,
                   "--store", str(store), *REPLAY)  # fmt: skip
    assert other.exit_code == 2 and "policy: got 'buy_and_hold', expected 'cash'" in other.stderr
    st = SessionState(tmp_path / "p.db", "paper")
    st.start(run_id="r", broker="alpaca", policy="cash", symbols=["BTC/USDT", "ETH/USDT"],
             timeframe="1h", now=datetime.now(UTC))  # fmt: skip
    dry = _paper("run", "--policy", "cash", "--symbols", SYMBOLS, "--state",
                 str(tmp_path / "p.db"), "--store", str(store), *REPLAY)  # fmt: skip
    assert (
        dry.exit_code == 2 and "got a paper session's state, expected a dry_run one" in dry.stderr
    )


def test_a_run_that_does_not_match_the_bundle_is_refused(store: Path, tmp_path: Path) -> None:
    from .test_paper_replay import _rl_bundle

    bundle = str(_rl_bundle(store, tmp_path / "b", 0))  # BTC, ETH, XRP on 1h, cappuccino14
    base = ["run", "--policy", bundle, "--state", str(tmp_path / "s.db"), "--store", str(store),
            *REPLAY]  # fmt: skip
    tf = _paper(*base, "--timeframe", "4h")
    assert (
        tf.exit_code == 2 and "--timeframe: got '4h', the bundle was trained on '1h'" in tf.stderr
    )
    syms = _paper(*base, "--symbols", SYMBOLS)
    assert syms.exit_code == 2 and "differ from the bundle's symbols" in syms.stderr
    short = _paper(*[a for a in base if a not in REPLAY], "--history-bars", "5")
    assert short.exit_code == 2, short.output
    assert "--history-bars: got 5, which leaves 0 bars after the features' warm-up" in short.stderr
    assert not (tmp_path / "s.db").exists()
