"""Trackers: the in-memory backend and MLflow on a local SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cappuccino.tracking import InMemoryTracker, MlflowTracker, flatten_params, run_name


def test_run_name_and_flat_params() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert run_name("baseline", "supervised", "mlp", "v1", when) == (
        "baseline_supervised_mlp_v1_20260102_030405"
    )
    assert flatten_params({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {
        "a.b": 1, "a.c": "[1, 2]", "d": "None"
    }  # fmt: skip


def test_in_memory_runs_nest_and_failures_are_recorded() -> None:
    t = InMemoryTracker()
    with t.start_run("study") as parent:
        t.log_params({"x": 1})
        with t.start_run("trial", {"k": "v"}) as child:
            t.log_metrics({"loss": 0.5}, step=1)
        with pytest.raises(RuntimeError), t.start_run("bad"):
            raise RuntimeError("boom")
    assert t.runs[child].parent == parent and t.runs[child].metrics == [(1, {"loss": 0.5})]
    assert [r.status for r in t.runs.values()] == ["FINISHED", "FINISHED", "FAILED"]
    with pytest.raises(RuntimeError, match="no open run"):
        t.log_params({"y": 2})


def test_mlflow_backend_round_trip(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t = MlflowTracker(uri, "tests")
    art = tmp_path / "a.json"
    art.write_text("{}")
    with t.start_run("parent") as parent, t.start_run("child", {"phase": "baseline"}) as child:
        t.log_params({"model": {"hidden": [8]}, "lr": 0.1})
        t.log_metrics({"loss": 0.5, "f1": 0.25}, step=1)
        t.log_metrics({"loss": 0.4, "f1": 0.5}, step=2)
        t.log_artifact(art)
    c = MlflowClient(tracking_uri=uri)
    run = c.get_run(child)
    assert run.data.params == {"model.hidden": "[8]", "lr": "0.1"}
    assert run.data.metrics == {"loss": 0.4, "f1": 0.5}
    assert [m.value for m in c.get_metric_history(child, "loss")] == [0.5, 0.4]
    assert run.data.tags["phase"] == "baseline" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.status == "FINISHED"
    assert [a.path for a in c.list_artifacts(child)] == ["a.json"]
    # artifacts live beside the database, not under the process's working directory
    stored = list((tmp_path / "mlartifacts").rglob("a.json"))
    assert len(stored) == 1 and child in stored[0].parts
