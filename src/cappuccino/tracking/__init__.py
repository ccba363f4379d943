"""Experiment tracking (leaf): a small Tracker interface with MLflow and in-memory backends."""

from cappuccino.tracking.base import (
    InMemoryTracker,
    RunStopped,
    Tracker,
    flatten_params,
    run_name,
)
from cappuccino.tracking.mlflow_backend import MlflowTracker, end_run

__all__ = [
    "InMemoryTracker",
    "MlflowTracker",
    "RunStopped",
    "Tracker",
    "end_run",
    "flatten_params",
    "run_name",
]
