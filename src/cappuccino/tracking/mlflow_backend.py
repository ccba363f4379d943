"""MLflow backend. The default store is ``sqlite:///mlflow.db`` in the working directory; any
tracking URI works (a team server: ``http://host:5000``). Metrics go in one batched call
per step. mlflow is imported when a tracker is created, not at package import.

With a SQLite store, an experiment created here keeps its artifacts in ``mlartifacts/``
beside the database file (MLflow's own default is ``./mlruns`` under whatever directory
the process runs in, which scatters one store's files over many places)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cappuccino.tracking.base import Tracker

DEFAULT_URI = "sqlite:///mlflow.db"


def _artifact_root(uri: str) -> str | None:
    """``file://<db folder>/mlartifacts`` for a ``sqlite:///`` URI; None (the server's or
    MLflow's default) otherwise."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()


class MlflowTracker(Tracker):
    def __init__(self, uri: str = DEFAULT_URI, experiment: str = "cappuccino") -> None:
        import mlflow

        self._mlflow = mlflow
        self.uri = uri
        mlflow.set_tracking_uri(uri)
        self._client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        exp = self._client.get_experiment_by_name(experiment)
        if exp is not None:
            self.experiment_id = exp.experiment_id
        else:
            self.experiment_id = self._client.create_experiment(
                experiment, artifact_location=_artifact_root(uri)
            )
        self._stack: list[str] = []

    @property
    def run_id(self) -> str:
        if not self._stack:
            raise RuntimeError("no open run")
        return self._stack[-1]

    def _start(self, name: str, tags: dict[str, str], parent: str | None) -> str:
        parent = parent or (self._stack[-1] if self._stack else None)
        if parent is not None:
            tags = {**tags, "mlflow.parentRunId": parent}
        run = self._client.create_run(self.experiment_id, run_name=name, tags=tags)
        self._stack.append(run.info.run_id)
        return str(run.info.run_id)

    def _end(self, status: str) -> None:
        self._client.set_terminated(self._stack.pop(), status=status)

    def _params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=items)

    def _tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def _artifact(self, path: Path, artifact_path: str | None) -> None:
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(path), artifact_path)


def end_run(uri: str, run_id: str, status: str) -> bool:
    """End the run ``run_id`` of the store at ``uri`` with ``status`` (KILLED, FAILED) if it
    is still RUNNING: a run whose process died never closes itself. True when it was ended."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    client.set_terminated(run_id, status=status)
    return True
