"""Readers never disturb writers: ``cappuccino monitor`` at 10 Hz and the dashboard polled
every 100 ms, while a study with 2 workers (the real worker loop, heartbeats on) and a
replayed paper session write for ``CAPPUCCINO_LOAD_S`` seconds (60 by default, as the issue
asks). Expected: no "database is locked" anywhere (readers, workers, runner), no failed
trial, every poll answered, and the readers saw the writers' progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from cappuccino.monitoring import Monitor
from cappuccino.monitoring.dashboard import make_app
from tests.monitoring.test_dashboard import serving

pytestmark = pytest.mark.network_loopback  # loopback only, behind the socket guard

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("CAPPUCCINO_LOAD_S", "60"))
LOCKED = "database is locked"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "CAPPUCCINO_THREADS": "1"})  # fmt: skip


def test_readers_cause_no_lock_errors_and_no_failed_trials(tmp_path: Path) -> None:
    cli = [str(Path(sys.executable).parent / "cappuccino")]
    store = tmp_path / "store"
    subprocess.run([*cli, "data", "sample", "--store", str(store), "--json"], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    url = f"sqlite:///{tmp_path / 'study.db'}"
    state = tmp_path / "paper.db"
    workers = [_spawn([sys.executable, "-m", "tests.tuning.worker", url, "load", "100000",
                       "--sleep", "0.3", "--worker", str(w), "--heartbeat", "1", "--grace", "30"],
                      tmp_path / f"worker{w}.log") for w in (0, 1)]  # fmt: skip
    paper = _spawn([*cli, "paper", "run", "--policy", "equal_weight:1", "--state", str(state),
                    "--store", str(store), "--symbols", "BTC/USDT,ETH/USDT,BNB/USDT",
                    "--replay", "2020-09-01", "2021-06-30", "--bar-delay", "0.02"],
                   tmp_path / "paper.log")  # fmt: skip
    procs = [*workers, paper]
    try:
        deadline = time.monotonic() + 60
        while not (state.exists() and (tmp_path / "study.db").exists()):
            assert time.monotonic() < deadline, "the writers never created their files"
            assert all(p.poll() is None for p in procs), "a writer died at start"
            time.sleep(0.2)
        time.sleep(1.0)  # the schemas are created
        monitor_log = tmp_path / "monitor.log"
        mon = _spawn([*cli, "monitor", "--interval", "0.1", "--storage", url, "--state",
                      str(state)], monitor_log)  # fmt: skip
        procs.append(mon)
        m = Monitor([url], [state], machine=False)
        polls, bad, locked, seen_bars, seen_trials = 0, [], [], set(), set()
        with serving(make_app(m, cache_s=0.0)) as base:
            stop = time.monotonic() + SECONDS
            while time.monotonic() < stop:
                t0 = time.monotonic()
                with urllib.request.urlopen(base + "/api/status", timeout=30) as r:
                    polls += 1
                    if r.status != 200:
                        bad.append(r.status)
                    doc = json.loads(r.read())
                text = json.dumps(doc)
                if LOCKED in text:
                    locked.append(text[:500])
                if doc["studies"]:
                    seen_trials.add(doc["studies"][0]["trials"])
                seen_bars.add(doc["paper"][0].get("bars_recorded"))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        m.close()
        assert all(p.poll() is None for p in procs), "a writer or the monitor died"
        trials = optuna.load_study(study_name="load", storage=url).get_trials(deepcopy=False)
        states = [t.state.name for t in trials]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    logs = {f.name: f.read_text(errors="replace") for f in tmp_path.glob("*.log")}
    assert states.count("FAIL") == 0, states
    assert states.count("COMPLETE") >= SECONDS / 3, f"too few trials: {len(states)}"
    assert bad == [] and locked == [], (bad, locked[:3])
    assert polls >= SECONDS * 3, f"{polls} polls in {SECONDS} s"
    assert len(seen_trials) > 5 and len(seen_bars) > 5  # the readers saw the writers move
    for name, text in logs.items():
        assert LOCKED not in text, f"{name}: {text[-2000:]}"
        assert "Traceback" not in text, f"{name}: {text[-2000:]}"
    assert logs["monitor.log"].count("cappuccino monitor") >= 1
    print(
        f"load: {SECONDS:.0f} s, {polls} dashboard polls, {len(states)} trials, "
        f"{max(b for b in seen_bars if b is not None)} bars"
    )
