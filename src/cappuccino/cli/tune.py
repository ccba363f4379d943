"""``cappuccino tune CONFIG ...``: an Optuna study over a model's search space, with workers.

``cappuccino tune CONFIG`` runs the study (it is the ``run`` subcommand: anything that is
not a subcommand name goes to it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from cappuccino.cli.render import (
    JSON_HELP,
    STORAGE_HELP,
    STUDY_HELP,
    console,
    emit_json,
    err_console,
    fail_cleanly,
    progress,
    say_error,
    set_help,
    table,
)
from cappuccino.config.tuning import TuneConfig


class _RunByDefault(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


SET_HELP = set_help(TuneConfig, "supervised.model=gru_attention")
app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help="Optuna studies over purged CV. `cappuccino tune CONFIG [--workers N]` runs or joins "
    "a study (it is `tune run CONFIG`); `tune report` and `tune best` read one.",
)


def _config(
    config: Path | None,
    overrides: list[str],
    study_name: str | None,
    storage: str | None,
    n_trials: int | None,
    timeout: float | None,
) -> Any:
    import optuna

    from cappuccino.config import load_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own logging says what matters
    extra = list(overrides)
    if study_name is not None:
        extra.append(f"study_name={study_name}")
    if storage is not None:
        extra.append(f"storage.url={storage}")
    if n_trials is not None:
        extra.append(f"n_trials={n_trials}")
    if timeout is not None:
        extra.append(f"timeout_s={timeout}")
    return load_config(TuneConfig, config, extra)


@app.command("run")
@fail_cleanly
def run(
    config: Path | None = typer.Argument(None, help="YAML study config (defaults embedded)"),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    study_name: str | None = typer.Option(None, "--study-name", help=STUDY_HELP),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    n_trials: int | None = typer.Option(None, "--n-trials", help="finished trials wanted"),
    workers: int = typer.Option(1, "--workers", min=1, help="local worker processes"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds before no new trial"),
    warm: str | None = typer.Option(
        None, "--warm-start", help="enqueue this study's top trials (those that fit) first"
    ),
    narrow_from: str | None = typer.Option(
        None, "--narrow-from", help="narrow numeric ranges to this study's top trials' span"
    ),
    top: int | None = typer.Option(None, "--top", help="top trials read (default 5)"),
    worker_index: int | None = typer.Option(None, "--worker-index", hidden=True),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run (or join) a study; workers elsewhere join with the same command and storage.
    --warm-start and --narrow-from read another study in the same storage."""
    import optuna

    from cappuccino.models.registry import get_model
    from cappuccino.tuning.tune import StudyIncomplete, tune, work
    from cappuccino.workflows.supervised import signal_backtest

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own logging says what matters
    extra = [f"{k}={v}" for k, v in (("warm_start", warm), ("narrow_from", narrow_from),
                                     ("top_k", top)) if v is not None]  # fmt: skip
    cfg = _config(config, [*overrides, *extra], study_name, storage, n_trials, timeout)
    if cfg.kind == "supervised":
        get_model(cfg.supervised.model)  # a bad name fails before the study is touched
    if worker_index is not None:  # a worker started by a launcher
        mine = work(cfg, worker_index, after_fit=signal_backtest)
        emit_json({"worker": worker_index, **mine})
        return
    with progress(
        f"study {cfg.study_name}: {cfg.n_trials} trials, {workers} worker(s)", not as_json
    ):
        try:
            summary = tune(cfg, workers=workers, after_fit=signal_backtest)
        except StudyIncomplete as exc:
            say_error(str(exc))
            raise typer.Exit(1) from exc
    for dead in summary["workers_failed"]:
        err_console.print(
            f"warning: worker {dead['worker']} died ({dead['reason']}, see {dead['log']}); "
            f"its trial was failed by the heartbeat and re-run, and the study reached "
            f"{summary['finished']}/{cfg.n_trials} finished trials",
            markup=False, highlight=False,
        )  # fmt: skip
    if as_json:
        emit_json(summary)
        return
    table([{"state": k, "trials": v} for k, v in sorted(summary["counts"].items())],
          f"study {cfg.study_name} ({summary['storage']})")  # fmt: skip
    console.print(
        f"best {cfg.metric} = {summary['best_value']} (trial {summary['best_trial']}): "
        f"{summary['best_params']}\nbundle: {summary['best_bundle']}"
    )


@app.command("report")
@fail_cleanly
def report(
    config: Path | None = typer.Argument(None, help="the study's YAML config"),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    study_name: str | None = typer.Option(None, "--study-name", help=STUDY_HELP),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    out: Path | None = typer.Option(None, "--out", help="HTML report file"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Top trials, parameter importance, optimisation history and failures of a study."""
    from cappuccino.tuning.report import study_report, write_report_html

    cfg = _config(config, overrides, study_name, storage, None, None)
    doc = study_report(cfg)
    if out is not None:
        doc["report"] = str(write_report_html(doc, out))
    if as_json:
        emit_json(doc)
        return
    table([{"state": k, "trials": v} for k, v in sorted(doc["counts"].items())],
          f"study {cfg.study_name}")  # fmt: skip
    table(
        [{"trial": t["trial"], cfg.metric: t["value"], "best_epoch": t["best_epoch"]}
         for t in doc["top_trials"]],
        "top trials",
    )  # fmt: skip
    if doc["importance"]:
        table([{"parameter": k, "importance": v} for k, v in doc["importance"].items()],
              "parameter importance (PED-ANOVA)")  # fmt: skip
    if "report" in doc:
        console.print(f"report: {doc['report']}")


@app.command("best")
@fail_cleanly
def best(
    config: Path | None = typer.Argument(None, help="the study's YAML config"),
    out: Path = typer.Option(..., "--out", help="new directory for the exported bundle"),
    top: int = typer.Option(1, "--top", min=1, help="k > 1: an ensemble of the k best trials"),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    study_name: str | None = typer.Option(None, "--study-name", help=STUDY_HELP),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export the best trial's bundle, or an ensemble averaging the top k's probabilities."""
    from cappuccino.tuning.export import export_best

    cfg = _config(config, overrides, study_name, storage, None, None)
    doc = export_best(cfg, out, top)
    if as_json:
        emit_json(doc)
    else:
        table([doc], "exported")
