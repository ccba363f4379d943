"""Studies: storage with heartbeats, sampler and pruner, the supervised objective, and
workers that share one study without losing or duplicating trials.

**Storage.** Any SQLAlchemy URL (SQLite on one machine, PostgreSQL across machines) as an
``RDBStorage`` with a heartbeat: a worker killed mid-trial stops beating, and after the
grace period the next worker to look marks its trial FAIL and re-queues it (WAITING, same
parameters) with :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`.

**Exactly ``n_trials``.** A study wants ``n_trials`` finished trials (COMPLETE or PRUNED).
Trial numbers are handed out atomically by the storage, so they order every trial of
every worker: a trial starts only if fewer than ``n_trials`` trials numbered before it are
finished, running or queued; otherwise it is recorded FAIL with ``skipped: over quota``
without running (a race between workers, rare) and its worker waits. A worker stops when
``n_trials`` are finished; while others' trials are running it waits, so that a trial that
fails or whose worker dies is replaced.

**Failures are visible.** A trial that raises is FAIL with ``error`` (type, message) and
``traceback`` user attributes; the study goes on. A pruned trial is PRUNED with the epoch
it was stopped at. A trial failed by the heartbeat has ``error`` set to
:data:`HEARTBEAT_LOST` (and its number in the study's ``heartbeat_lost`` attribute), and
its MLflow run, which its dead worker could not close, is ended ``KILLED``; its retry
starts clean (no error, no run id).
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cappuccino.config.loading import apply_values
from cappuccino.config.secrets import storage_url
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.config.tuning import PrunerSettings, StorageSettings, TuneConfig
from cappuccino.tracking import RunStopped, Tracker, end_run
from cappuccino.training.supervised_run import (
    AfterFit,
    feature_table,
    train_supervised,
    windows_from_table,
)
from cappuccino.tuning.spaces import Space, study_space
from cappuccino.utils.devices import default_device
from cappuccino.utils.progress import Steps, steps

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
FINISHED = ("COMPLETE", "PRUNED")


HEARTBEAT_LOST = "worker heartbeat lost (the worker was killed or hung); re-queued"
RUN_ATTRS = ("error", "traceback", "mlflow_run_id", "mlflow_tracking_uri")  # not inherited


def record_run(trial: optuna.Trial, tracker: Any, run_id: str) -> None:
    """Note on ``trial`` the tracked run it opened, so that a run left open by a dead worker
    can be ended by whoever finds the trial stale."""
    trial.set_user_attr("mlflow_run_id", run_id)
    uri = getattr(tracker, "uri", None)
    if uri is not None:
        trial.set_user_attr("mlflow_tracking_uri", uri)


def _end_tracked_run(trial: Any) -> None:
    run_id, uri = trial.user_attrs.get("mlflow_run_id"), trial.user_attrs.get("mlflow_tracking_uri")
    if run_id and uri and end_run(uri, run_id, "KILLED"):
        log.warning("trial %d: its MLflow run %s ended KILLED", trial.number, run_id)


def _heartbeat_callback(max_retry: int | None) -> Any:
    import optuna

    class HeartbeatLost(optuna.storages.RetryHeartbeatStaleTrialCallback):
        """Record the loss, end the dead worker's run, re-queue the trial without its attrs."""

        def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            lost = list(study.user_attrs.get("heartbeat_lost", []))
            study.set_user_attr("heartbeat_lost", sorted({*lost, trial.number}))
            _end_tracked_run(trial)
            clean = copy.deepcopy(trial)
            clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in RUN_ATTRS}
            super().__call__(study, clean)

    return HeartbeatLost(max_retry=max_retry)


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the trials whose worker stopped beating, each with ``error`` = HEARTBEAT_LOST,
    and run the storage's stale-trial callback on them (optuna's own sweep, without the
    reason). Returns the numbers failed here."""
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return []
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):  # the heartbeat API
        try:
            storage.set_trial_user_attr(trial_id, "error", HEARTBEAT_LOST)
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    callback = storage.get_heartbeat_stale_trial_callback()
    numbers = []
    for trial_id in failed:
        trial = copy.deepcopy(storage.get_trial(trial_id))
        numbers.append(trial.number)
        log.warning("trial %d: %s", trial.number, HEARTBEAT_LOST)
        if callback is not None:
            callback(study, trial)
    return numbers


def make_storage(s: StorageSettings) -> optuna.storages.RDBStorage:
    """The study's storage; a password comes from ``CAPPUCCINO_STORAGE_PASSWORD`` only."""
    import optuna

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat API
    engine_kwargs: dict[str, Any] = {}
    if s.url.startswith("sqlite"):
        Path(s.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # wait on the file lock, don't fail
    storage = optuna.storages.RDBStorage(
        storage_url(s.url),
        engine_kwargs=engine_kwargs,
        heartbeat_interval=s.heartbeat_interval,
        grace_period=s.grace_period,
        heartbeat_stale_trial_callback=_heartbeat_callback(s.max_retry),
    )
    if s.url.startswith("sqlite"):
        # WAL (kept in the file): readers (monitor, dashboard) never block a worker's commit
        with storage.engine.connect() as c:
            c.exec_driver_sql("PRAGMA journal_mode=WAL")
    return storage


def make_pruner(p: PrunerSettings) -> optuna.pruners.BasePruner:
    import optuna

    if p.kind == "median":
        return optuna.pruners.MedianPruner(p.n_startup_trials, p.n_warmup_steps)
    if p.kind == "percentile":
        return optuna.pruners.PercentilePruner(p.percentile, p.n_startup_trials, p.n_warmup_steps)
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def load_existing_study(cfg: TuneConfig) -> optuna.Study:
    """The study ``cfg`` names, read only: ``ValueError`` naming the storage and the studies
    it holds when there is no such study (``tune report`` and ``tune best`` never create
    one, nor an SQLite file)."""
    import optuna

    url = cfg.storage.url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"--storage: {url}: no such database; run `cappuccino tune` first")
    storage = make_storage(cfg.storage)
    names = sorted(optuna.get_all_study_names(storage))
    if cfg.study_name not in names:
        raise ValueError(
            f"--study-name: got {cfg.study_name!r}, no such study in {url} (it holds "
            f"{', '.join(names) if names else 'none'})"
        )
    return optuna.load_study(study_name=cfg.study_name, storage=storage,
                             pruner=make_pruner(cfg.pruner))  # fmt: skip


def open_study(cfg: TuneConfig, worker: int = 0) -> optuna.Study:
    """Create or load the study. Each worker's sampler is seeded from the study seed, the
    worker index and the number of trials already in the study: workers side by side, or a
    worker restarted after a crash, never replay each other's proposals, and a single
    worker on a new study is reproducible."""
    import optuna
    import sqlalchemy.exc

    attempts = 6
    for attempt in range(attempts):
        try:
            study = optuna.create_study(
                storage=make_storage(cfg.storage),
                study_name=cfg.study_name,
                direction=cfg.direction,
                pruner=make_pruner(cfg.pruner),
                load_if_exists=True,
            )
            existing = len(study.get_trials(deepcopy=False))
            study.sampler = optuna.samplers.TPESampler(
                seed=cfg.seed + 1_000_003 * worker + 7_919 * existing
            )
            return study
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            # workers starting together race to create the schema / the study row; a server
            # that cannot be reached is no race
            if attempt == attempts - 1 or "connect" in str(exc.orig or exc).lower():
                raise
            log.warning("opening study %s: %s; retrying", cfg.study_name, exc.__class__.__name__)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


class _Pruned(RunStopped):
    pass


class _OverQuota(Exception):
    pass


class SupervisedObjective:
    """Sample, train through :func:`train_supervised` (bundle, figures, tracking), report
    ``cfg.metric`` each epoch to the pruner, return its value at the kept epoch. The bars
    and the feature tables are loaded once per process, outside the trials."""

    def __init__(
        self,
        cfg: TuneConfig,
        bars: pl.DataFrame,
        tracker: Tracker | None = None,
        parent_run: str | None = None,
        after_fit: Callable[[SupervisedConfig], AfterFit | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.bars = bars
        self.after_fit = after_fit
        self.space: Space = study_space(cfg)
        losses = next(d.choices for d in self.space.dims if d.name == "loss")
        if cfg.metric.endswith("_loss") and len(losses) > 1:
            raise ValueError(
                f"metric {cfg.metric}: losses {list(losses)} are sampled, and their values are "
                "not comparable across trials; fix one (space.loss.choices=[bce]) or tune a "
                "loss-free metric (val_pr_auc, val_f1_pos, ...)"
            )
        self.tracker = tracker
        self.parent_run = parent_run
        self._tables: dict[tuple[str, str], tuple[pl.DataFrame, str]] = {}

    def config_for(self, overrides: dict[str, Any], number: int) -> SupervisedConfig:
        """The trial's run config: the study's base plus the sampled overrides; the kept
        epoch is chosen on the study's metric."""
        base = self.cfg.supervised.model_dump(mode="json", by_alias=True)
        data = apply_values(base, overrides)
        data["train"]["early_stopping"]["metric"] = self.cfg.metric
        data["train"]["early_stopping"]["mode"] = (
            "max" if self.cfg.direction == "maximize" else "min"
        )
        data["output_dir"] = str(self.cfg.output_dir / self.cfg.study_name / f"trial_{number:04d}")
        data["variant"] = f"{self.cfg.study_name}_t{number}"
        return SupervisedConfig.model_validate(data)

    def __call__(self, trial: optuna.Trial) -> float:
        _, overrides = self.space.sample(trial)
        run_cfg = self.config_for(overrides, trial.number)
        key = (run_cfg.feature_set, run_cfg.windows.label)
        if key not in self._tables:
            self._tables[key] = feature_table(run_cfg, self.bars)
        data = windows_from_table(run_cfg, *self._tables[key], default_device())

        def report(row: dict[str, float]) -> None:
            epoch = int(row["epoch"])
            trial.report(row[self.cfg.metric], epoch)
            if trial.should_prune():
                raise _Pruned(
                    f"pruned at epoch {epoch}: {self.cfg.metric} {row[self.cfg.metric]:.4g}"
                )

        summary = train_supervised(
            run_cfg, self.tracker, bars=self.bars, data=data, on_epoch=report,
            parent_run=self.parent_run,
            on_run_start=lambda run_id: record_run(trial, self.tracker, run_id),
            after_fit=self.after_fit(run_cfg) if self.after_fit is not None else None,
        )  # fmt: skip
        trial.set_user_attr("bundle", summary["bundle"])
        trial.set_user_attr("best_epoch", summary["best_epoch"])
        trial.set_user_attr(
            "test", {k: v for k, v in summary["test"].items() if isinstance(v, float)}
        )
        value = summary["best_metric"]["value"]
        if value is None:
            raise ValueError(f"{self.cfg.metric}: no finite value in any epoch")
        return float(value)


def guarded(
    objective: Callable[[optuna.Trial], float], n_trials: int
) -> Callable[[optuna.Trial], float]:
    """The objective behind the quota check and with errors recorded on the trial."""
    import optuna

    ahead_states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.WAITING,
    )

    def run(trial: optuna.Trial) -> float:
        ahead = [
            t for t in trial.study.get_trials(deepcopy=False, states=ahead_states)
            if t.number < trial.number
        ]  # fmt: skip
        if len(ahead) >= n_trials:
            trial.set_user_attr("skipped", "over quota: not run")
            raise _OverQuota(f"trial {trial.number}: {len(ahead)} trials ahead of it")
        try:
            return objective(trial)
        except _Pruned as exc:
            raise optuna.TrialPruned(str(exc)) from exc
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            raise

    return run


def run_worker(
    cfg: TuneConfig,
    objective: Callable[[optuna.Trial], float],
    *,
    worker: int = 0,
    poll_s: float = 1.0,
) -> dict[str, int]:
    """Work on the study until it has ``cfg.n_trials`` finished trials (or the timeout);
    returns this worker's counts of trials by outcome."""

    study = open_study(cfg, worker)
    inner = guarded(objective, cfg.n_trials)
    t0 = time.monotonic()
    mine = {"ran": 0, "skipped": 0}

    def fn(trial: optuna.Trial) -> float:
        try:
            return inner(trial)
        except _OverQuota:
            mine["skipped"] += 1
            raise
        finally:
            mine["ran"] += 1

    with steps(f"study {cfg.study_name} trials", cfg.n_trials) as bar:
        _work_until_done(cfg, study, fn, bar, t0, poll_s)
    mine["ran"] -= mine["skipped"]
    return mine


def _work_until_done(
    cfg: TuneConfig, study: optuna.Study, fn: Any, bar: Steps, t0: float, poll_s: float
) -> None:
    import optuna

    while True:
        if cfg.timeout_s is not None and time.monotonic() - t0 > cfg.timeout_s:
            break
        with warnings.catch_warnings():  # experimental since 2.9, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)  # a dead worker's trial -> FAIL (with why) + re-queued
        c = counts(study)
        done = sum(c.get(s, 0) for s in FINISHED)
        if done != bar.done:  # every worker's finished trials
            bar.update(done, note=f"{c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned")
        if done >= cfg.n_trials:
            break
        if done + c.get("RUNNING", 0) + c.get("WAITING", 0) >= cfg.n_trials and not c.get(
            "WAITING"
        ):
            time.sleep(poll_s)  # the rest is running elsewhere; replace it if it fails
            continue
        study.optimize(fn, n_trials=1, catch=(Exception,), gc_after_trial=True)


__all__ = [
    "SupervisedObjective",
    "counts",
    "guarded",
    "make_pruner",
    "make_storage",
    "open_study",
    "run_worker",
]
