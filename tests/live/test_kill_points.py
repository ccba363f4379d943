"""kill -9 of the runner at each point of an order's life, then a restart with the same
state file: no order reaches the broker twice, and the state equals the broker (orders,
fills, positions, cash).

The runner is a real ``cappuccino paper run`` process replaying stored bars against the
loopback fake of Alpaca (a separate venue that outlives the runner, as a broker does); it
kills itself with SIGKILL at the named point (``CAPPUCCINO_FAULT_KILL``), so nothing of
Python's cleanup runs: what survives is exactly what was committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cappuccino.live.state import SessionState, StateError
from tests.conftest import sample_store

from .fake_alpaca import FakeAlpaca

pytestmark = pytest.mark.network_loopback
SYMBOLS = "BTC/USDT,ETH/USDT"
SYMBOL_MAP = "BTC/USDT=BTC/USD,ETH/USDT=ETH/USD"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_store(tmp_path_factory.mktemp("kill"))


def _run(store: Path, state: Path, url: str, kill: str | None, *, policy: str = "equal_weight:4",
         replay: tuple[str, str] = ("2021-06-01", "2021-06-02"),
         timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``paper run`` against the Alpaca fake at ``url``, killed at ``kill`` (or not)."""
    env = {**os.environ, "APCA_API_KEY_ID": "key-id", "APCA_API_SECRET_KEY": "secret"}
    env.pop("CAPPUCCINO_FAULT_KILL", None)
    if kill:
        env["CAPPUCCINO_FAULT_KILL"] = kill
    cmd = [sys.executable, "-m", "cappuccino.cli.main", "paper", "run", "--broker", "alpaca",
           "--broker-url", url, "--policy", policy, "--symbols", SYMBOLS,
           "--symbol-map", SYMBOL_MAP, "--state", str(state), "--store", str(store),
           "--replay", *replay, "--json"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)  # fmt: skip


def _assert_state_equals_broker(state: Path, fake: FakeAlpaca) -> None:
    st = SessionState.reader(state)
    orders = {i.client_order_id: (i, o) for i, o in st.orders()}
    with fake.lock:
        at_fake = {o["client_order_id"]: o for o in fake.orders.values()}
        activities = list(fake.activities)
        positions = dict(fake.positions)
        cash = fake.cash
    # no duplicates: one order at the fake per client order id, each one the state's
    assert fake.n_orders() == len(at_fake) == fake.submits_processed
    assert set(at_fake) <= set(orders)
    for cid, o in at_fake.items():
        row = orders[cid][1]
        assert row.status == "FILLED" == o["status"].upper(), cid
        assert row.filled_qty == pytest.approx(float(o["filled_qty"]), rel=1e-12)
    never_sent = set(orders) - set(at_fake)
    assert all(orders[c][1].status in ("EXPIRED", "REJECTED") for c in never_sent)
    # fills: the fake's executions, each once
    assert sorted(f.trade_id for f in st.fills()) == sorted(a["id"] for a in activities)
    # positions and cash
    held = {s: q for s, q in st.positions().items() if q}
    assert held == pytest.approx({"BTC/USDT": positions.get("BTCUSD", 0.0),
                                  "ETH/USDT": positions.get("ETHUSD", 0.0)})  # fmt: skip
    eq = st.equity_rows()[-1]
    assert eq.cash == pytest.approx(cash, rel=1e-12)
    run = st.run()
    assert run is not None and run.end_reason == "replay finished"
    assert (run.reconcile or {}).get("ok") is True


@pytest.mark.parametrize(
    "point", ["before_intent:2", "after_intent:2", "after_submit:3", "after_ack:2", "after_fill:2"]
)
def test_a_kill_at_each_point_loses_nothing_and_doubles_nothing(
    store: Path, tmp_path: Path, point: str
) -> None:
    with FakeAlpaca(cash=10_000.0, prices={"BTC/USD": 1_000.0, "ETH/USD": 100.0}) as fake:
        state = tmp_path / "s.db"
        killed = _run(store, state, fake.url, point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        before = fake.n_orders()
        done = _run(store, state, fake.url, None)
        assert done.returncode == 0, done.stderr[-2000:]
        assert fake.n_orders() >= before
        _assert_state_equals_broker(state, fake)
        # the restart looked its orders up instead of sending them again (the venue's unique
        # client order id would have refused a second one: the last line of defence, unused)
        assert fake.duplicate_attempts == 0


def test_sigterm_stops_cleanly_and_the_session_resumes(store: Path, tmp_path: Path) -> None:
    """A service manager's stop (SIGTERM): exit 130, the session recorded as stopped (not red),
    and the same command resumes it to the uninterrupted result."""
    import time

    from cappuccino.monitoring.paper import session_status
    from cappuccino.workflows.paper import PaperSettings, build_runner

    state = tmp_path / "t.db"
    cmd = [sys.executable, "-m", "cappuccino.cli.main", "paper", "run", "--policy", "equal_weight:4",
           "--symbols", SYMBOLS, "--state", str(state), "--store", str(store), "--replay",
           "2021-06-01", "2021-06-03", "--bar-delay", "0.05", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            run = SessionState.reader(state).run() if state.is_file() else None
        except StateError:  # the runner is creating the schema this very moment
            run = None
        if run is not None and run.last_bar is not None:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert out == "" and "stopped by a signal; resume with the same --state" in err
    doc = session_status(state)
    assert doc["health"]["status"] == "stopped" and doc["ended"]["reason"] == "stopped by a signal"
    done = subprocess.run([*cmd[:-3], "--json"], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    whole = build_runner(PaperSettings(
        policy="equal_weight:4", broker="sim", state=tmp_path / "w.db", store=store,
        symbols=SYMBOLS.split(","), replay=(datetime(2021, 6, 1, tzinfo=UTC),
                                            datetime(2021, 6, 3, tzinfo=UTC)),
    )).run()  # fmt: skip
    assert json.loads(done.stdout)["final_equity"] == whole.final_equity
