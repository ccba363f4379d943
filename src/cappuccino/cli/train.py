"""``cappuccino train``: one supervised window classifier, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

import typer

from cappuccino.cli.render import console, emit_json, fail_cleanly, progress, table


@fail_cleanly
def train(
    config: Path | None = typer.Argument(None, help="YAML run config (defaults embedded)"),
    overrides: list[str] = typer.Option([], "--set", help="override, e.g. model=gru_attention"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train, select on val, score test once, write the bundle; prints the summary."""
    from cappuccino.config import load_config
    from cappuccino.config.supervised import SupervisedConfig
    from cappuccino.tracking import MlflowTracker
    from cappuccino.training.supervised_run import train_supervised
    from cappuccino.utils.io import atomic_write_json

    cfg = load_config(SupervisedConfig, config, overrides)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.output_dir / "config.json", cfg.model_dump(mode="json", by_alias=True))
    tracker = MlflowTracker(cfg.tracking_uri, cfg.experiment) if cfg.tracking_uri else None
    with progress(f"training {cfg.model}", not as_json):
        summary = train_supervised(cfg, tracker)
    if as_json:
        emit_json(summary)
        return
    keys = ("loss", "accuracy", "precision", "recall", "f1_pos", "roc_auc", "pr_auc")
    rows = [{"split": s, **{k: summary[s][k] for k in keys}} for s in ("val", "test")]
    table(
        rows,
        f"{cfg.model}: best epoch {summary['best_epoch']}, threshold {summary['threshold']:.3f}",
    )
    console.print(f"bundle: {summary['bundle']}  run: {summary['run_name']} ({summary['run_id']})")
