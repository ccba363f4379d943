"""The launcher's bookkeeping: a killed worker does not fail a study that reached its count
(one line says so), a study short of its count is one error line, and no MLflow run of the
study is left RUNNING."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.config.tuning import StorageSettings
from cappuccino.tuning import tune as tune_mod
from cappuccino.tuning.study import make_storage

runner = CliRunner()


def _args(tmp_path: Path, store: Path, runs: str, *extra: str) -> list[str]:
    return [  # progress lines off (--log-level ERROR): the one line asserted is the whole stderr
        "--log-level", "ERROR", "tune", "--study-name", "s",
        "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--json",
        "--set", f"supervised.data.store={store}", "--set", "supervised.data.symbols=[ETH/USDT]",
        "--set", "supervised.train.epochs=1", "--set", f"output_dir={tmp_path / 'out'}",
        "--set", f"supervised.tracking_uri={runs}", "--set", "supervised.backtest.enabled=false",
        "--set", "pruner.kind=none", "--set", "space.lookback.choices=[4]", *extra,
    ]  # fmt: skip


def _killed_at_once(resolved: Any, index: int, log_file: Any, threads: int) -> Any:
    """A worker process that is SIGKILLed before it does anything."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    return subprocess.Popen([sys.executable, "-c", code], stdout=log_file)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("launcher") / "store"
    assert runner.invoke(app, ["data", "sample", "--store", str(path), "--json"]).exit_code == 0
    return path


def test_a_killed_worker_does_not_fail_a_study_that_reached_its_count(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: Any
) -> None:
    runs = mlflow_store(tmp_path / "mlflow.db")
    # a parent run whose launcher was killed outright (SIGKILL): RUNNING, on the study
    client = MlflowClient(tracking_uri=runs)
    exp = client.create_experiment("cappuccino")
    orphan = client.create_run(exp, run_name="study_s").info.run_id
    storage = make_storage(StorageSettings(url=f"sqlite:///{tmp_path / 'o.db'}"))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr(tune_mod.PARENT_ATTR, orphan)

    monkeypatch.setattr(tune_mod, "start_worker", _killed_at_once)
    res = runner.invoke(app, _args(tmp_path, store, runs, "--n-trials", "2", "--workers", "2"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["finished"] == 2 and doc["counts"] == {"COMPLETE": 2}
    assert [(w["worker"], w["reason"]) for w in doc["workers_failed"]] == [(1, "killed by SIGKILL")]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: worker 1 died (killed by SIGKILL")
    assert "reached 2/2 finished trials" in lines[0]
    statuses = {r.info.run_id: r.info.status for r in client.search_runs([exp])}
    assert statuses[orphan] == "FINISHED"  # ended by the launcher that completed the study
    assert "RUNNING" not in statuses.values() and len(statuses) == 3  # parent + 2 trials


def test_a_study_short_of_its_count_is_one_error_line(
    tmp_path: Path, store: Path, mlflow_store: Any
) -> None:
    runs = mlflow_store(tmp_path / "mlflow.db")
    res = runner.invoke(app, _args(tmp_path, store, runs, "--n-trials", "2", "--timeout", "0.001"))
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert lines == ["error: study s: 1 of 2 trials finished"], lines  # one, then the timeout
    assert "Traceback" not in res.output and res.stdout == ""
    client = MlflowClient(tracking_uri=runs)
    exp = client.get_experiment_by_name("cappuccino").experiment_id
    statuses = sorted(r.info.status for r in client.search_runs([exp]))
    assert statuses == ["FAILED", "FINISHED"]  # the parent, and the one trial
