"""A study worker with a synthetic objective, run as a separate process by the fault tests:
``python -m tests.tuning.worker URL STUDY N_TRIALS [--sleep S] [--fail-trial K] [--worker W]``.
Prints its own counts as JSON."""

from __future__ import annotations

import argparse
import json
import time

import optuna

from cappuccino.config.tuning import TuneConfig
from cappuccino.tracking import MlflowTracker
from cappuccino.tuning.study import record_run, run_worker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("study")
    ap.add_argument("n_trials", type=int)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--fail-trial", type=int, default=-1)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--heartbeat", type=int, default=1)
    ap.add_argument("--grace", type=int, default=3)
    ap.add_argument("--mlflow", default=None, help="track each trial as a run in this store")
    a = ap.parse_args()
    cfg = TuneConfig.model_validate(
        {
            "study_name": a.study,
            "n_trials": a.n_trials,
            "direction": "minimize",
            "storage": {"url": a.url, "heartbeat_interval": a.heartbeat, "grace_period": a.grace},
            "pruner": {"kind": "none"},
        }
    )

    tracker = MlflowTracker(a.mlflow, "worker-test") if a.mlflow else None

    def objective(trial: optuna.Trial) -> float:
        if tracker is None:
            return inner(trial)
        with tracker.start_run(f"trial_{trial.number}") as run_id:
            record_run(trial, tracker, run_id)
            return inner(trial)

    def inner(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5.0, 5.0)
        for step in range(3):
            time.sleep(a.sleep / 3)
            trial.report((x - 1.0) ** 2 + 1.0 / (step + 1), step)
        if trial.number == a.fail_trial:
            raise RuntimeError(f"boom in trial {trial.number}")
        return (x - 1.0) ** 2

    print(json.dumps(run_worker(cfg, objective, worker=a.worker, poll_s=0.2)), flush=True)


if __name__ == "__main__":
    main()
