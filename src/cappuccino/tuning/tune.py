"""``cappuccino tune``: open the study, start the workers, summarise.

The launching process creates the study and its MLflow parent run (its id is stored on
the study, so workers started later, on this machine or another, nest their trial runs
under it), starts ``workers - 1`` more worker processes with the same command, works
itself, waits for them, and reports. A worker that exits non-zero is an error.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import polars as pl
import torch

from cappuccino.config.supervised import SupervisedConfig
from cappuccino.config.tuning import TuneConfig
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import load_market
from cappuccino.tracking import MlflowTracker, Tracker
from cappuccino.training.supervised_run import AfterFit
from cappuccino.tuning.rl_objective import RLObjective
from cappuccino.tuning.study import (
    FINISHED,
    SupervisedObjective,
    counts,
    load_existing_study,
    open_study,
    run_worker,
)
from cappuccino.utils.io import atomic_write_json

AfterFitFor = Callable[[SupervisedConfig], AfterFit | None]
"""A trial config's after-fit step (the workflow passes the signal backtest)."""

log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"
CONFIG_ATTR = "config"


def load_study(cfg: TuneConfig) -> tuple[TuneConfig, Any]:
    """The study located by ``cfg``'s storage and name, with the config it was started with
    (kind, CV, metric); ``cfg`` itself for a study started without one. A study that does
    not exist is an error (:func:`load_existing_study`); nothing is created."""
    study = load_existing_study(cfg)
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is not None:
        cfg = TuneConfig.model_validate(
            {**stored, "storage": cfg.storage.model_dump(mode="json"), "study_name": cfg.study_name}
        )
    return cfg, study


def _tracker(cfg: TuneConfig) -> Tracker | None:
    s = cfg.supervised  # RL studies track to the same URI and experiment settings
    return MlflowTracker(s.tracking_uri, s.experiment) if s.tracking_uri else None


def work(
    cfg: TuneConfig,
    worker: int,
    bars: pl.DataFrame | None = None,
    after_fit: AfterFitFor | None = None,
) -> dict[str, int]:
    """One worker: load the data once, then run trials until the study has its count;
    ``after_fit`` gives each supervised trial its after-fit step."""
    study = open_study(cfg, worker)
    tracker = _tracker(cfg)
    parent = study.user_attrs.get(PARENT_ATTR)
    objective: Callable[[Any], float]
    if cfg.kind == "rl":
        r = cfg.rl
        data = load_market(r.data.store, r.data.timeframe, r.data.symbols, r.env.feature_set)
        data = data.between(cfg.cv.start, cfg.cv.end)
        objective = RLObjective(cfg, data, tracker, parent_run=parent)
    else:
        s = cfg.supervised
        if bars is None:
            bars = ParquetStore(s.data.store).read_universe(s.data.tf, s.data.symbols)
        objective = SupervisedObjective(cfg, bars, tracker, parent_run=parent,
                                        after_fit=after_fit)  # fmt: skip
    return run_worker(cfg, objective, worker=worker)


def tune(
    cfg: TuneConfig,
    *,
    workers: int = 1,
    bars: pl.DataFrame | None = None,
    after_fit: AfterFitFor | None = None,
) -> dict[str, Any]:
    """Run the study with ``workers`` local processes: this one and ``workers - 1`` started
    with the resolved config (``<output_dir>/<study>/study.json``, no secrets in it); each
    one's output goes to ``worker_<i>.log`` beside it. Local workers split the machine's
    cores between them (torch threads = cores // workers)."""
    threads = None
    if workers > 1:  # N workers on one machine share its cores: no oversubscription
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
    study = open_study(cfg, 0)
    if CONFIG_ATTR not in study.user_attrs:  # what `tune report` reads back
        study.set_user_attr(CONFIG_ATTR, cfg.model_dump(mode="json"))
    tracker = _tracker(cfg)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    with _parent_run(tracker, cfg, study) as _:
        if workers > 1:
            folder = cfg.output_dir / cfg.study_name
            resolved = folder / "study.json"
            atomic_write_json(resolved, cfg.model_dump(mode="json"))
            for i in range(1, workers):
                log_file = open(folder / f"worker_{i}.log", "wb")  # noqa: SIM115 (closed below)
                logs.append(log_file)
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "cappuccino.cli.main", "tune", "run", str(resolved),
                     "--worker-index", str(i)],
                    stdout=log_file, stderr=subprocess.STDOUT,
                    env={**os.environ, "OMP_NUM_THREADS": str(threads),
                         "MKL_NUM_THREADS": str(threads)},
                ))  # fmt: skip
        try:
            mine = work(cfg, 0, bars, after_fit)
        finally:
            codes = [p.wait() for p in procs]
            for f in logs:
                f.close()
    bad = [i + 1 for i, c in enumerate(codes) if c != 0]
    if bad:
        raise RuntimeError(
            f"worker(s) {bad} exited with codes {[codes[i - 1] for i in bad]}; see "
            f"{cfg.output_dir / cfg.study_name}/worker_<i>.log"
        )
    return summarize(cfg) | {"this_worker": mine, "workers": workers}


class _parent_run:
    """The study's MLflow parent run: created once, its id stored on the study."""

    def __init__(self, tracker: Tracker | None, cfg: TuneConfig, study: Any) -> None:
        self.tracker, self.cfg, self.study = tracker, cfg, study
        self._cm: Any = None

    def __enter__(self) -> str | None:
        if self.tracker is None or PARENT_ATTR in self.study.user_attrs:
            return None
        model = self.cfg.supervised.model if self.cfg.kind == "supervised" else "ppo"
        self._cm = self.tracker.start_run(
            f"study_{self.cfg.study_name}",
            {"phase": self.cfg.supervised.phase, "experiment_type": f"study_{self.cfg.kind}",
             "model_type": model},
        )  # fmt: skip
        run_id: str = self._cm.__enter__()
        self.tracker.log_params(self.cfg.model_dump(mode="json", exclude={"supervised"}))
        self.study.set_user_attr(PARENT_ATTR, run_id)
        return run_id

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def summarize(cfg: TuneConfig, study: Any = None) -> dict[str, Any]:
    """Counts by state, the best value, parameters and bundle (JSON-ready); ``study``: the
    already-opened study of ``cfg`` (its stored config applied)."""
    if study is None:
        cfg, study = load_study(cfg)
    c = counts(study)
    out: dict[str, Any] = {
        "study_name": cfg.study_name,
        "storage": cfg.storage.url,  # holds no password (config.secrets.storage_url)
        "kind": cfg.kind,
        "metric": cfg.metric
        if cfg.kind == "supervised"
        else f"mean over CPCV folds of annualised OOS Sharpe minus {cfg.cv.benchmark}'s",
        "direction": cfg.direction,
        "counts": c,
        "finished": sum(c.get(s, 0) for s in FINISHED),
        "best_value": None,
        "best_params": None,
        "best_bundle": None,
        "best_trial": None,
    }
    if c.get("COMPLETE"):
        best = study.best_trial
        out |= {
            "best_value": best.value,
            "best_params": best.params,
            "best_bundle": best.user_attrs.get("bundle"),
            "best_trial": best.number,
        }
    return out
