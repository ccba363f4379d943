"""Fault tests: workers in separate processes on one SQLite / PostgreSQL study.

The PostgreSQL case reads ``CAPPUCCINO_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and
sets it). In CI (``CI`` set) a missing URL is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy.exc

from cappuccino.config.tuning import StorageSettings
from cappuccino.tuning.study import HEARTBEAT_LOST, make_storage

ROOT = Path(__file__).resolve().parents[2]


def _worker(url: str, study: str, n: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tuning.worker", url, study, str(n), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **_password_env()},
    )  # fmt: skip


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    os.environ.update(_password_env())
    storage = make_storage(StorageSettings(url=url, heartbeat_interval=1, grace_period=3))
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _password_env() -> dict[str, str]:
    """The test server's password travels as the env var the storage reads."""
    url = os.environ.get("CAPPUCCINO_TEST_POSTGRES_URL")
    if not url:
        return {}
    from sqlalchemy.engine import make_url

    return {"CAPPUCCINO_STORAGE_PASSWORD": make_url(url).password or ""}


def _postgres_url() -> str:
    url = os.environ.get("CAPPUCCINO_TEST_POSTGRES_URL")
    if url:
        from sqlalchemy.engine import URL, make_url

        u = make_url(url)
        return URL.create(
            u.drivername, u.username, None, u.host, u.port, u.database
        ).render_as_string()
    if os.environ.get("CI"):
        pytest.fail("CAPPUCCINO_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL")
    pytest.skip("no PostgreSQL here: set CAPPUCCINO_TEST_POSTGRES_URL (bash .ci/postgres.sh)")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return _postgres_url()


def test_two_workers_finish_the_requested_trials_none_lost_or_duplicated(url: str) -> None:
    study = f"two-{uuid.uuid4().hex[:8]}"
    procs = [_worker(url, study, 10, "--sleep", "0.3", "--worker", str(w)) for w in (0, 1)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    mine = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    trials = _trials(url, study)
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 10
    assert "RUNNING" not in states and "WAITING" not in states
    # every trial but the (rare) over-quota skips ran, once, in one of the two workers
    skipped = [t for t in trials if t.user_attrs.get("skipped")]
    assert sum(m["ran"] for m in mine) == 10 and sum(m["skipped"] for m in mine) == len(skipped)
    assert len({t.number for t in trials}) == len(trials)
    assert all(m["ran"] > 0 for m in mine)  # both took part


def test_a_killed_workers_trial_becomes_fail_is_retried_and_the_count_is_reached(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = "kill"
    runs = f"sqlite:///{tmp_path / 'mlflow.db'}"
    slow = _worker(url, study, 4, "--sleep", "30", "--heartbeat", "1", "--grace", "3",
                   "--mlflow", runs)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until its first trial is running
        time.sleep(0.3)
        if (tmp_path / "study.db").exists():
            try:
                # running with its parameter sampled (the snapshot must hold it)
                running = [t for t in _trials(url, study)
                           if t.state.name == "RUNNING" and t.params]  # fmt: skip
            except KeyError:  # the study is not created yet
                continue
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
                continue  # the worker is creating the schema this very moment (a race we lost)
            if running:
                break
    else:
        slow.kill()
        pytest.fail("the first worker never started a trial")
    killed = running[0]
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    fresh = _worker(url, study, 4, "--sleep", "0.2", "--heartbeat", "1", "--grace", "3",
                    "--mlflow", runs)  # fmt: skip
    _out, err = fresh.communicate(timeout=120)
    assert fresh.returncode == 0, err
    trials = {t.number: t for t in _trials(url, study)}
    states = [t.state.name for t in trials.values()]
    assert trials[killed.number].state.name == "FAIL"  # after the grace period
    assert states.count("COMPLETE") == 4 and "RUNNING" not in states and "WAITING" not in states
    # the killed trial was re-queued with its parameters and completed by the new worker
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retried = [t for t in trials.values() if retry(t) == killed.number]
    assert len(retried) == 1
    assert killed.params and trials[killed.number].params == killed.params
    assert retried[0].state.name == "COMPLETE" and retried[0].params == killed.params
    # it says why, its MLflow run (left RUNNING by the dead worker) ended KILLED, and the
    # retry starts clean: no inherited error, its own run
    dead = trials[killed.number]
    assert dead.user_attrs["error"] == HEARTBEAT_LOST
    assert "error" not in retried[0].user_attrs
    client = mlflow.tracking.MlflowClient(tracking_uri=runs)
    assert client.get_run(dead.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert retried[0].user_attrs["mlflow_run_id"] != dead.user_attrs["mlflow_run_id"]
    statuses = [r.info.status for r in client.search_runs(
        [client.get_experiment_by_name("worker-test").experiment_id])]  # fmt: skip
    assert "RUNNING" not in statuses and statuses.count("KILLED") == 1
    storage = make_storage(StorageSettings(url=url, heartbeat_interval=1, grace_period=3))
    lost = optuna.load_study(study_name=study, storage=storage).user_attrs["heartbeat_lost"]
    assert lost == [killed.number]


def test_a_trial_that_raises_is_fail_with_its_error_and_the_study_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    p = _worker(url, "raise", 4, "--fail-trial", "1")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    trials = _trials(url, "raise")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["error"] == "RuntimeError: boom in trial 1"
    assert "raise RuntimeError" in failed[0].user_attrs["traceback"]
    assert [t.state.name for t in trials].count("COMPLETE") == 4
    assert json.loads(out.strip().splitlines()[-1]) == {"ran": 5, "skipped": 0}
