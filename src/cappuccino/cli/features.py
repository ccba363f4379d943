"""``cappuccino features ...``: build, audit, list."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import typer

from cappuccino.cli.render import (
    FEATURE_SET_HELP,
    JSON_HELP,
    STORE_HELP,
    TIMEFRAME_HELP,
    emit_json,
    fail_cleanly,
    progress,
    symbol_list,
    table,
)
from cappuccino.data.schema import Timeframe

app = typer.Typer(no_args_is_help=True, help="Causal features, labels and the lookahead audit.")


def _load_bars(
    store: Path, timeframe: str, symbols: list[str] | None
) -> tuple[pl.DataFrame, Timeframe]:
    from cappuccino.data.store import ParquetStore

    tf = Timeframe.parse(timeframe)
    return ParquetStore(store).read_universe(tf, symbol_list(symbols)), tf


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Registered feature sets and their columns."""
    from cappuccino.features.sets import FEATURE_SETS

    rows = [
        {
            "name": fs.name,
            "columns": len(fs.columns),
            "description": fs.description,
            "column_names": list(fs.columns),
        }
        for fs in FEATURE_SETS.values()
    ]
    mtf = ("<set>+<tf>[+<tf>...], e.g. cappuccino14+4h+1d: the set's columns, then the same "
           "columns on each longer timeframe's last closed bar, named <column>@<tf>")  # fmt: skip
    if as_json:
        emit_json({"feature_sets": rows, "multi_timeframe": mtf})
    else:
        table(
            [
                {**r, "column_names": ", ".join(fs.columns)}
                for r, fs in zip(rows, FEATURE_SETS.values(), strict=True)
            ],
            "feature sets",
            ["name", "columns", "column_names"],
        )
        print(f"multi-timeframe sets: {mtf}")


@app.command("build")
@fail_cleanly
def build(
    store: Path = typer.Option(..., "--store", help=STORE_HELP),
    feature_set: str = typer.Option(..., "--feature-set", help=FEATURE_SET_HELP),
    out: Path = typer.Option(..., "--out", help="output Parquet file"),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", "-s", help="repeat or comma-separate; default all"
    ),
    label: list[str] = typer.Option(
        [],
        "--label",
        help="forward:h=24,threshold=0.01,fee=0.001 or triple:tp=0.02,sl=0.02,h=24 (repeat)",
    ),
    timeframe: str = typer.Option("1h", "--timeframe", help=TIMEFRAME_HELP),
    align: bool = typer.Option(
        False, "--align", help="put all symbols on one calendar (latest first bar to earliest last)"
    ),
    keep_warmup: bool = typer.Option(
        False, "--keep-warmup", help="keep warm-up rows (null features)"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Fill gaps, compute features and labels, drop incomplete rows (counted), write Parquet."""
    from cappuccino.features.labels import parse_label
    from cappuccino.features.table import build_feature_table
    from cappuccino.utils.io import atomic_write_parquet

    if out.resolve().is_relative_to(store.resolve()):
        raise ValueError(
            f"--out: got {out}, inside the store {store}: only imports write there (a table "
            "in its partition tree would be read back as bars); write it outside the store"
        )
    specs = [parse_label(x) for x in label]
    with progress("building features", not as_json):
        bars, tf = _load_bars(store, timeframe, symbols)
        frame, report = build_feature_table(
            bars, feature_set, specs, timeframe=tf, drop_warmup=not keep_warmup, align=align
        )
        atomic_write_parquet(out, frame)
    doc = {"out": str(out), "rows": frame.height, "columns": frame.columns, **report.to_dict()}
    if as_json:
        emit_json(doc)
        return
    rows = [
        {
            "symbol": s,
            "filled_bars": report.filled_bars.get(s, 0),
            "warmup_dropped": report.warmup_rows_dropped.get(s, 0),
            "label_dropped": report.label_rows_dropped.get(s, 0),
            "rows_out": n,
            **{f"pos[{k}]": v for k, v in report.positive_rate.get(s, {}).items()},
        }
        for s, n in sorted(report.rows_out.items())
    ]
    table(rows, f"{feature_set} -> {out} ({frame.height:,} rows, {len(frame.columns)} columns)")


@app.command("audit")
@fail_cleanly
def audit(
    store: Path = typer.Option(..., "--store", help=STORE_HELP),
    feature_set: str = typer.Option(..., "--feature-set", help=FEATURE_SET_HELP),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", "-s", help="repeat or comma-separate; default all"
    ),
    timeframe: str = typer.Option("1h", "--timeframe", help=TIMEFRAME_HELP),
    cuts: int = typer.Option(12, "--cuts", min=1, help="number of cut points"),
    seed: int = typer.Option(0, "--seed", help="seed of the perturbed futures"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Recompute on truncated and perturbed futures; report columns that change (exit 1 if any)."""
    from cappuccino.data.validate import fill_gaps
    from cappuccino.features.audit import audit_lookahead

    with progress("auditing", not as_json):
        bars, tf = _load_bars(store, timeframe, symbols)
        bars, _ = fill_gaps(bars, tf)
        report = audit_lookahead(bars, feature_set, n_cuts=cuts, seed=seed)
    if as_json:
        emit_json(report.to_dict())
    else:
        rows = [
            {
                "column": c,
                "violations": report.violations.get(c, 0),
                "first_violation": report.first_violation.get(c, ""),
            }
            for c in report.columns
        ]
        table(
            rows,
            f"lookahead audit of {feature_set}: {'PASS' if report.passed else 'FAIL'} "
            f"({cuts} cut points)",
        )
    if not report.passed:
        raise typer.Exit(1)
