"""Chaos replay (slow; `pytest -m slow tests/live/test_chaos.py`): 5,000 bars against the
loopback Alpaca fake with 2 % of its answers replaced by faults (5xx before and after
accepting an order, dropped connections after accepting, look-ups that miss, fills reported
twice) and the runner killed with SIGKILL every 500 bars. The final orders, fills,
positions and equity equal a fault-free, uninterrupted replay of the same bars."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cappuccino.live.state import SessionState
from tests.conftest import sample_store

from .fake_alpaca import FakeAlpaca
from .test_kill_points import _run as _run_paper

pytestmark = [pytest.mark.slow, pytest.mark.network_loopback, pytest.mark.timeout(2400)]
START, END = "2020-08-10", "2021-03-07T07:00"  # 5,000 bars


def _run(store: Path, state: Path, url: str, kill: str | None) -> subprocess.CompletedProcess[str]:
    return _run_paper(store, state, url, kill, policy="equal_weight:24", replay=(START, END),
                      timeout=900)  # fmt: skip


def _book(state: Path) -> dict[str, Any]:
    st = SessionState.reader(state)
    # each session has its own run id, so its own client order ids: compare by bar and leg
    key = {i.client_order_id: (i.bar, i.symbol, i.leg) for i, _ in st.orders()}
    fills = sorted((key[f.client_order_id], f.side, f.qty, f.price) for f in st.fills())
    return {
        "orders": {
            key[i.client_order_id]: (i.side, i.qty, o.status, o.filled_qty) for i, o in st.orders()
        },
        "sent": sum(1 for _, o in st.orders() if o.status != "REJECTED"),
        "fills": fills,
        "positions": st.positions(),
        "equity": [(r.bar, r.cash, r.equity) for r in st.equity_rows()],
        "decisions": len(st.decisions()),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_store(tmp_path_factory.mktemp("chaos"))


def test_chaos_replay_equals_the_fault_free_replay(store: Path, tmp_path: Path) -> None:
    prices = {"BTC/USD": 1_000.0, "ETH/USD": 100.0}
    with FakeAlpaca(cash=100_000.0, prices=prices) as clean:
        ref = _run(store, tmp_path / "ref.db", clean.url, None)
        assert ref.returncode == 0, ref.stderr[-3000:]
    with FakeAlpaca(cash=100_000.0, prices=prices) as fake:
        fake.chaos_rate = 0.02
        kills = 0
        for _ in range(20):
            res = _run(store, tmp_path / "chaos.db", fake.url, "bar:500")
            if res.returncode == 0:
                break
            assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
            kills += 1
        assert res.returncode == 0, res.stderr[-3000:]
        faults = list(fake.chaos_log)
        n_orders = fake.n_orders()
        dup = {o["client_order_id"] for o in fake.orders.values()}
    want, got = _book(tmp_path / "ref.db"), _book(tmp_path / "chaos.db")
    assert len(want["equity"]) >= 5_000 and kills == len(want["equity"]) // 500
    assert len(faults) > 100, f"{len(faults)} faults injected"
    assert n_orders == len(dup) == want["sent"] == got["sent"]  # no order placed twice
    assert got["orders"] == want["orders"]
    assert got["fills"] == want["fills"]
    assert got["positions"] == want["positions"]
    assert got["equity"] == want["equity"]
    assert got["decisions"] == want["decisions"]
    kinds: dict[str, int] = {}
    for _, k in faults:
        kinds[k] = kinds.get(k, 0) + 1
    print(json.dumps({"bars": len(got["equity"]), "kills": kills, "faults": len(faults),
                      "by_kind": kinds, "orders": n_orders}))  # fmt: skip
