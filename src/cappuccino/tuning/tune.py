"""``cappuccino tune``: open the study, start the workers, summarise.

The launching process creates the study and its MLflow parent run (its id is stored on
the study, so workers started later, on this machine or another, nest their trial runs
under it), starts ``workers - 1`` more worker processes with the same command, works
itself, waits for them, and reports.

A worker that dies (killed, out of memory) is not the study's failure: its trial is failed
by the heartbeat and re-run, so when the study still reaches its count the launcher
succeeds and the summary names the dead workers (``workers_failed``); otherwise
:class:`StudyIncomplete`. SIGTERM ends the launcher like Ctrl-C: its MLflow parent run ends
``KILLED``. A parent run left RUNNING by a launcher killed outright is ended ``FINISHED`` by
the next launcher that sees the study reach its count.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import torch

from cappuccino.config.supervised import SupervisedConfig
from cappuccino.config.tuning import TuneConfig
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import load_market
from cappuccino.tracking import MlflowTracker, Tracker, end_run
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
from cappuccino.tuning.warm import (
    NARROW_ATTR,
    WARM_ATTR,
    apply_narrowing,
    narrowing,
    top_trials,
    warm_start,
)
from cappuccino.utils.io import atomic_write_json

AfterFitFor = Callable[[SupervisedConfig], AfterFit | None]
"""A trial config's after-fit step (the workflow passes the signal backtest)."""

log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"
CONFIG_ATTR = "config"


class StudyIncomplete(RuntimeError):
    """The study did not reach its count of finished trials (workers died, or the timeout)."""


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit here (main thread only), so runs and workers are closed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


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
    narrowed = narrowing(cfg)  # the source studies are read before the study is created
    warm = top_trials(cfg, cfg.warm_start, "--warm-start") if cfg.warm_start else None
    study = open_study(cfg, 0)
    if narrowed is not None:  # the study's own narrowing, once stored, wins
        if NARROW_ATTR not in study.user_attrs:
            study.set_user_attr(NARROW_ATTR, narrowed)
        cfg = apply_narrowing(cfg, study.user_attrs[NARROW_ATTR])  # every worker samples it
    if CONFIG_ATTR not in study.user_attrs:  # what `tune report` reads back
        study.set_user_attr(CONFIG_ATTR, cfg.model_dump(mode="json"))
    if warm is not None and WARM_ATTR not in study.user_attrs:  # once per study
        study.set_user_attr(WARM_ATTR, warm_start(study, cfg, warm))
    tracker = _tracker(cfg)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    with _sigterm_as_exit(), _parent_run(tracker, cfg, study) as own_parent:
        if workers > 1:
            folder = cfg.output_dir / cfg.study_name
            resolved = folder / "study.json"
            atomic_write_json(resolved, cfg.model_dump(mode="json"))
            for i in range(1, workers):
                log_file = open(folder / f"worker_{i}.log", "wb")  # noqa: SIM115 (closed below)
                logs.append(log_file)
                procs.append(start_worker(resolved, i, log_file, threads or 1))
        try:
            mine = work(cfg, 0, bars, after_fit)
        finally:
            if sys.exc_info()[0] is not None:  # this launcher is going down: so do its workers
                for p in procs:
                    p.terminate()
            codes = [p.wait() for p in procs]
            for f in logs:
                f.close()
        summary = summarize(cfg)
        failed = [
            {"worker": i + 1, "code": c, "reason": _exit_reason(c),
             "log": str(cfg.output_dir / cfg.study_name / f"worker_{i + 1}.log")}
            for i, c in enumerate(codes) if c != 0
        ]  # fmt: skip
        dead = ", ".join(f"worker {f['worker']} ({f['reason']}, see {f['log']})" for f in failed)
        if summary["finished"] < cfg.n_trials:
            raise StudyIncomplete(  # ends the parent run FAILED
                f"study {cfg.study_name}: {summary['finished']} of {cfg.n_trials} trials finished"
                + (f"; {dead}" if dead else "")
            )
        uri = getattr(tracker, "uri", None)
        parent = None if own_parent else _stored_parent(cfg)  # ours ends with this block
        if parent and uri:
            end_run(uri, parent, "FINISHED")  # a launcher killed outright left it RUNNING
    attrs = study.user_attrs
    return summary | {"this_worker": mine, "workers": workers, "workers_failed": failed,
                      WARM_ATTR: attrs.get(WARM_ATTR), NARROW_ATTR: attrs.get(NARROW_ATTR)}  # fmt: skip


def _stored_parent(cfg: TuneConfig) -> str | None:
    _, study = load_study(cfg)
    parent: str | None = study.user_attrs.get(PARENT_ATTR)
    return parent


def start_worker(resolved: Any, index: int, log_file: Any, threads: int) -> subprocess.Popen[bytes]:
    """Worker ``index`` as a process running ``tune run RESOLVED --worker-index index``."""
    return subprocess.Popen(
        [sys.executable, "-m", "cappuccino.cli.main", "tune", "run", str(resolved),
         "--worker-index", str(index)],
        stdout=log_file, stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )  # fmt: skip


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
