"""``cappuccino train``: one supervised window classifier, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    console,
    emit_json,
    fail_cleanly,
    parse_time,
    progress,
    set_help,
    symbol_list,
    table,
)
from cappuccino.config.supervised import SupervisedConfig


@fail_cleanly
def train(
    config: Path | None = typer.Argument(None, help="YAML run config (defaults embedded)"),
    overrides: list[str] = typer.Option(
        [], "--set", help=set_help(SupervisedConfig, "model=gru_attention")
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train, select on val, score test once, write the bundle; prints the summary."""
    from cappuccino.config import load_config
    from cappuccino.models.registry import get_model
    from cappuccino.tracking import MlflowTracker
    from cappuccino.utils.io import atomic_write_json
    from cappuccino.workflows.supervised import train as train_supervised

    cfg = load_config(SupervisedConfig, config, overrides)
    get_model(cfg.model)  # a bad name fails before anything is created
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.output_dir / "config.json", cfg.model_dump(mode="json", by_alias=True))
    tracker = MlflowTracker(cfg.tracking_uri, cfg.experiment) if cfg.tracking_uri else None
    with progress(f"training {cfg.model}", not as_json):
        summary = train_supervised(cfg, tracker)
    if as_json:
        emit_json(summary)
        return
    from cappuccino.reporting.metrics import view

    keys = view("classifier")

    rows = [{"split": s, **{k: summary[s][k] for k in keys}} for s in ("val", "test")]
    table(
        rows,
        f"{cfg.model}: best epoch {summary['best_epoch']}, threshold {summary['threshold']:.3f}",
    )
    console.print(f"bundle: {summary['bundle']}  run: {summary['run_name']} ({summary['run_id']})")


@fail_cleanly
def predict(
    bundle: Path = typer.Argument(..., help="model bundle directory (from cappuccino train)"),
    store: Path = typer.Option(..., "--store", help="Parquet store folder"),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", "-s", help="repeat or comma-separate; default: the bundle's"
    ),
    start: str | None = typer.Option(
        None, "--start", help="first bar read, ISO 8601 UTC (scores begin after the warm-up)"
    ),
    end: str | None = typer.Option(None, "--end", help="last bar to read, ISO 8601 UTC"),
    out: Path = typer.Option(..., "--out", help="Parquet file: timestamp, symbol, prob, signal"),
    epoch: int | None = typer.Option(
        None, "--epoch", help="score with this top-k checkpoint instead of the kept model"
    ),
    allow_version_mismatch: bool = typer.Option(
        False,
        "--allow-version-mismatch",
        help="load a bundle written with other library versions (the differences are logged)",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Score new bars with a bundle (same features, window, scaler and symbol order)."""
    import polars as pl

    from cappuccino.bundles.supervised import load_bundle
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore
    from cappuccino.utils.io import atomic_write_parquet
    from cappuccino.workflows.supervised import predict as score

    bounds = [(parse_time(start, "--start"), "ge"), (parse_time(end, "--end"), "le")]
    ensemble = (bundle / "ensemble.json").is_file()  # cappuccino tune best --top K
    b = load_bundle(bundle / "members" / "0" if ensemble else bundle, None if ensemble else epoch,
                    allow_version_mismatch=allow_version_mismatch)  # fmt: skip
    b_meta = b.meta
    tf = Timeframe.parse(b_meta["timeframe"])
    bars = ParquetStore(store).read_universe(tf, symbol_list(symbols) or b_meta["symbols"])
    for when, op in bounds:
        if when is not None:
            bars = bars.filter(getattr(pl.col("timestamp"), op)(when))
    if ensemble:
        from cappuccino.workflows.supervised import predict_ensemble

        frame = predict_ensemble(bundle, bars, allow_version_mismatch=allow_version_mismatch)
    else:
        frame = score(b, bars)
    atomic_write_parquet(out, frame)
    doc = {
        "out": str(out),
        "rows": frame.height,
        "signals": int(frame["signal"].sum()),
        "threshold": "mean of the members'" if ensemble else b_meta["threshold"],
        "epoch": epoch if epoch is not None else b_meta["best_epoch"],
        "symbols": sorted(frame["symbol"].unique().to_list()),
    }
    if as_json:
        emit_json(doc)
    else:
        table([doc], "predictions")
