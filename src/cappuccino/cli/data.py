"""``cappuccino data ...``: import, download, sample, info."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from cappuccino.cli.render import emit_json, fail_cleanly, progress, symbol_list, table

app = typer.Typer(no_args_is_help=True, help="Import, download and inspect market bars.")

IMPORT_COLUMNS = [
    "symbol",
    "rows_read",
    "rows_stored",
    "rows_new",
    "duplicates_removed",
    "duplicates_conflicting",
    "gaps",
    "missing_bars",
    "first",
    "last",
]


def _show_import(rows: list[dict[str, object]], as_json: bool, title: str) -> None:
    if as_json:
        emit_json({"symbols": rows})
    else:
        table(rows, title, IMPORT_COLUMNS)


@app.command("import")
@fail_cleanly
def import_(
    paths: list[Path] = typer.Argument(..., help="CSV or Parquet files"),
    store: Path = typer.Option(..., "--store", help="store folder"),
    fmt: str = typer.Option("auto", "--format", help="auto, cryptodatadownload, csv or parquet"),
    timeframe: str | None = typer.Option(
        None, "--timeframe", help="bar interval; inferred if omitted"
    ),
    on_gap: str = typer.Option("keep", "--on-gap", help="fill, keep or error"),
    on_bad_ohlc: str = typer.Option("keep", "--on-bad-ohlc", help="keep, drop or error"),
    on_malformed: str = typer.Option("error", "--on-malformed", help="error or skip (counted)"),
    symbol: str | None = typer.Option(None, "--symbol", help="symbol for files without one"),
    timestamp_unit: str = typer.Option(
        "ms", "--timestamp-unit", help="generic csv: s, ms, us, ns, iso"
    ),
    column: list[str] = typer.Option(
        [], "--column", help="generic csv mapping canonical=file_column"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Read, validate (every repair counted) and upsert bars into the store."""
    from cappuccino.data.importing import import_files
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore

    options: dict[str, object] = {}
    if symbol:
        options["symbol"] = symbol
    if fmt == "csv":
        options["timestamp_unit"] = timestamp_unit
        options["columns"] = dict(c.split("=", 1) for c in column)
    with progress("importing", not as_json):
        report = import_files(
            paths,
            ParquetStore(store),
            fmt=fmt,
            timeframe=Timeframe.parse(timeframe) if timeframe else None,
            on_gap=on_gap,  # type: ignore[arg-type]
            on_bad_ohlc=on_bad_ohlc,  # type: ignore[arg-type]
            on_malformed=on_malformed,  # type: ignore[arg-type]
            reader_options=options,
        )
    _show_import(report.rows(), as_json, f"import into {store} ({report.timeframe})")


@app.command("sample")
@fail_cleanly
def sample(
    store: Path = typer.Option(..., "--store", help="store folder"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import the bundled 7-pair hourly sample (2020-08 to 2021-06) into the store."""
    from cappuccino.data.importing import import_files
    from cappuccino.data.sample import sample_path
    from cappuccino.data.store import ParquetStore

    report = import_files([sample_path()], ParquetStore(store))
    _show_import(report.rows(), as_json, f"bundled sample into {store}")


@app.command("info")
@fail_cleanly
def info(
    store: Path = typer.Option(..., "--store", help="store folder"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List stored partitions: rows, filled bars, first and last bar."""
    from cappuccino.data.store import ParquetStore

    if not store.is_dir():
        raise FileNotFoundError(f"{store}: no such store folder")
    rows = [p.to_dict() for p in ParquetStore(store).info()]
    if as_json:
        emit_json({"store": str(store), "partitions": rows})
    else:
        table(rows, f"store {store}", ["symbol", "timeframe", "rows", "filled", "first", "last"])


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@app.command("download")
@fail_cleanly
def download(
    symbols: list[str] = typer.Option(
        ..., "--symbols", "--symbol", "-s", help="e.g. BTC/USDT: repeat or comma-separate"
    ),
    store: Path = typer.Option(..., "--store", help="store folder"),
    exchange: str = typer.Option("binance", "--exchange", help="ccxt exchange id"),
    timeframe: str = typer.Option("1h", "--timeframe"),
    since: str | None = typer.Option(None, "--since", help="ISO date for the first download"),
    until: str | None = typer.Option(None, "--until", help="ISO date to stop at"),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        envvar="CAPPUCCINO_EXCHANGE_URL",
        help="override the exchange's API host (testing, proxies)",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Download closed candles through ccxt, resuming from the last stored bar (needs [live])."""
    from cappuccino.data.download import download_ohlcv
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore

    with progress("downloading", not as_json):
        results = download_ohlcv(
            ParquetStore(store),
            exchange_id=exchange,
            symbols=symbol_list(symbols) or [],
            timeframe=Timeframe.parse(timeframe),
            since=_parse_time(since),
            until=_parse_time(until),
            base_url=base_url,
        )
    rows = [r.to_dict() for r in results]
    if as_json:
        emit_json({"symbols": rows})
    else:
        table(rows, f"download from {exchange}")


@app.command("build-sample", hidden=True)
@fail_cleanly
def build_sample_cmd(
    source: Path = typer.Option(..., "--source", help="folder with Binance_<PAIR>_1h.csv"),
    out: Path | None = typer.Option(None, "--out", help="default: the packaged sample"),
) -> None:
    """Rebuild the bundled sample from CryptoDataDownload exports (maintainers)."""
    from cappuccino.data.sample import build_sample, sample_path

    manifest = build_sample(source, out or sample_path())
    emit_json(manifest)
