"""Read-only views of studies, MLflow runs, paper sessions and the machine: one status
snapshot (:func:`status`), the health rules, the dashboard and the terminal monitor."""

from cappuccino.monitoring.snapshot import Monitor, Snapshot, status

__all__ = ["Monitor", "Snapshot", "status"]
