"""``cappuccino data ...``: import, download, sample, info, verify, resample."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    TIMEFRAME_HELP,
    emit_json,
    err_console,
    fail_cleanly,
    parse_time,
    progress,
    symbol_list,
    table,
)

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


NOT_COUNTS = {"sources", "input_order", "first", "last", "rows_read", "rows_valid"}


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """An import row with its validation details lifted beside the store's counts."""
    return {**row.get("details", {}), **{k: v for k, v in row.items() if k != "details"}}


def import_columns(flat_rows: list[dict[str, Any]]) -> list[str]:
    """The import table's columns: the usual ones, then every other count that is not zero
    in some row (so a repair or a finding never hides in the JSON only)."""
    extra: list[str] = []
    for r in flat_rows:
        for k, v in r.items():
            if k in IMPORT_COLUMNS or k in NOT_COUNTS or k in extra or k == "timeframe":
                continue
            if v not in (0, None, False, ""):
                extra.append(k)
    return [*IMPORT_COLUMNS, *extra]


def _show_import(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        emit_json({"symbols": rows})
        return
    flat = [_flat(r) for r in rows]
    table(flat, title, import_columns(flat))


@app.command("import")
@fail_cleanly
def import_(
    paths: list[Path] = typer.Argument(..., help="CSV or Parquet files"),
    store: Path = typer.Option(..., "--store", help="store folder"),
    fmt: str = typer.Option("auto", "--format", help="auto, cryptodatadownload, csv or parquet"),
    timeframe: str | None = typer.Option(
        None, "--timeframe", help="bar interval; inferred if omitted"
    ),
    on_gap: str = typer.Option(
        "keep", "--on-gap", help="fill (bounded by --max-fill-bars), keep or error"
    ),
    max_fill_bars: int = typer.Option(
        24, "--max-fill-bars", help="--on-gap fill: longer gaps stay gaps (counted as unfilled)"
    ),
    on_bad_ohlc: str = typer.Option(
        "error",
        "--on-bad-ohlc",
        help="impossible bars (price <= 0, high < low, high below open/close, low above them, "
        "negative volume, time before --not-before or over a bar in the future): error or "
        "drop (counted)",
    ),
    not_before: str = typer.Option(
        "2009-01-01", "--not-before", help="earliest possible bar time (ISO date)"
    ),
    on_interval_mismatch: str = typer.Option(
        "error",
        "--on-interval-mismatch",
        help="steps that are not --timeframe, or a second interval in a file: error or keep "
        "(treated as gaps, counted)",
    ),
    on_malformed: str = typer.Option("error", "--on-malformed", help="error or skip (counted)"),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="a stored partition that cannot be read is set aside and rewritten from these files",
    ),
    symbol: str | None = typer.Option(None, "--symbol", help="symbol for files without one"),
    timestamp_unit: str = typer.Option(
        "ms", "--timestamp-unit", help="generic csv: s, ms, us, ns, iso"
    ),
    column: list[str] = typer.Option(
        [], "--column", help="generic csv mapping canonical=file_column"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Read, validate (every repair counted) and upsert bars into the store."""
    from cappuccino.data.importing import import_files
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore
    from cappuccino.data.validate import NOT_BEFORE

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
            on_interval_mismatch=on_interval_mismatch,  # type: ignore[arg-type]
            max_fill_bars=max_fill_bars,
            not_before=parse_time(not_before, "--not-before") or NOT_BEFORE,
            on_malformed=on_malformed,  # type: ignore[arg-type]
            repair=repair,
            reader_options=options,
        )
    _show_import(report.rows(), as_json, f"import into {store} ({report.timeframe})")


@app.command("sample")
@fail_cleanly
def sample(
    store: Path = typer.Option(..., "--store", help="store folder"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
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
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
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


@app.command("verify")
@fail_cleanly
def verify(
    store: Path = typer.Option(..., "--store", help="store folder"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Read every stored partition whole; exit 2 when one is broken (unreadable, empty, wrong
    schema, foreign symbols, unsorted or off-grid times). `data import --repair` rewrites one."""
    from cappuccino.data.store import ParquetStore

    if not store.is_dir():
        raise FileNotFoundError(f"--store: {store}: no such store folder")
    checks = [c.to_dict() for c in ParquetStore(store).verify()]
    broken = [c for c in checks if not c["ok"]]
    if as_json:
        emit_json({"store": str(store), "partitions": checks, "broken": len(broken)})
    else:
        table(checks, f"verify {store}", ["symbol", "timeframe", "rows", "ok", "problem"])
    if broken:
        err_console.print(
            f"[bold red]error:[/] {len(broken)} of {len(checks)} partitions broken, first "
            f"{broken[0]['path']}: {broken[0]['problem']}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2)


@app.command("resample")
@fail_cleanly
def resample(
    store: Path = typer.Option(..., "--store", help="store folder"),
    source: str = typer.Option("1h", "--from", help="stored timeframe to read, e.g. 1h"),
    target: str = typer.Option(..., "--to", help="timeframe to write, e.g. 4h or 1d"),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", "-s", help="repeat or comma-separate; default all stored"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Resample stored bars into a longer timeframe: OHLC first/max/min/last, volumes and
    trades summed. Only complete buckets are stored (those with gap-filled bars flagged and
    counted); the still-open last bucket never is. Idempotent, like import."""
    from cappuccino.data.resample import resample_store
    from cappuccino.data.store import ParquetStore

    if not store.is_dir():
        raise FileNotFoundError(f"--store: {store}: no such store folder")
    src, dst = _timeframe("--from", source), _timeframe("--to", target)
    rows = [r.to_dict() for r in resample_store(ParquetStore(store), src, dst,
                                                 symbol_list(symbols))]  # fmt: skip
    if as_json:
        emit_json({"store": str(store), "from": src.label, "to": dst.label, "symbols": rows})
        return
    table(rows, f"{src.label} -> {dst.label} in {store}",
          ["symbol", "source_bars", "complete", "filled", "incomplete", "open_bucket",
           "rows_new", "rows_updated", "rows_stored"])  # fmt: skip


@app.command("synthetic")
@fail_cleanly
def synthetic(
    store: Path = typer.Option(..., "--store", help="a new store folder (marked synthetic)"),
    n_symbols: int = typer.Option(143, "--symbols", help="symbols SYN000/USDT, SYN001/USDT, ..."),
    years: float = typer.Option(5.0, "--years", help="length of history, 365-day years"),
    timeframe: str = typer.Option("1h", "--timeframe", help=TIMEFRAME_HELP),
    start: str = typer.Option("2018-01-01", "--start", help="first bar (ISO date, UTC)"),
    seed: int = typer.Option(0, "--seed", help="the one seed of the universe"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A synthetic universe for scale tests: seeded geometric random walks with market
    regimes (bull, bear, calm), into a store of its own that refuses real bars (never mixed
    into real-data results). The model is documented in cappuccino.data.synthetic."""
    from cappuccino.data.store import ParquetStore
    from cappuccino.data.synthetic import SyntheticSpec, write_synthetic

    tf = _timeframe("--timeframe", timeframe)
    if not years > 0:
        raise ValueError(f"--years: got {years}, expected > 0")
    try:
        first = datetime.fromisoformat(start)
    except ValueError:
        raise ValueError(
            f"--start: got {start!r}, expected an ISO date such as 2018-01-01"
        ) from None
    first = first if first.tzinfo else first.replace(tzinfo=UTC)
    spec = SyntheticSpec(symbols=n_symbols, bars=int(years * 365 * 86_400_000 // tf.ms),
                         timeframe=tf.label, start=first.isoformat(), seed=seed)  # fmt: skip
    res = write_synthetic(ParquetStore(store), spec)
    if as_json:
        emit_json(res.to_dict())
        return
    shares = ", ".join(f"{k} {v:.0%}" for k, v in res.regime_share.items())
    print(f"{res.symbols} synthetic symbols x {res.bars_per_symbol:,} {tf.label} bars "
          f"({res.first} .. {res.last}) in {store}: {res.rows_new:,} new rows; "
          f"regimes: {shares}")  # fmt: skip


def _timeframe(option: str, text: str) -> Any:
    """``text`` as a timeframe; the error names ``option``."""
    from cappuccino.data.schema import Timeframe

    try:
        return Timeframe.parse(text)
    except ValueError as exc:
        raise ValueError(str(exc).replace("timeframe:", f"{option}:", 1)) from exc


@app.command("download")
@fail_cleanly
def download(
    symbols: list[str] = typer.Option(
        ..., "--symbols", "--symbol", "-s", help="e.g. BTC/USDT: repeat or comma-separate"
    ),
    store: Path = typer.Option(..., "--store", help="store folder"),
    exchange: str = typer.Option("binance", "--exchange", help="ccxt exchange id"),
    timeframe: str = typer.Option("1h", "--timeframe", help=TIMEFRAME_HELP),
    since: str | None = typer.Option(None, "--since", help="ISO date for the first download"),
    until: str | None = typer.Option(None, "--until", help="ISO date to stop at"),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        envvar="CAPPUCCINO_EXCHANGE_URL",
        help="override the exchange's API host (testing, proxies)",
    ),
    retries: int = typer.Option(
        5, "--retries", min=0, help="retries of a failed request (backoff 1 s, doubling)"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Download closed candles through ccxt, resuming from the last stored bar (needs the
    `live` extra: pip install 'cappuccino\\[live]'). An unreachable exchange exits 3."""
    from cappuccino.data.download import download_ohlcv
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore

    with progress("downloading", not as_json):
        results = download_ohlcv(
            ParquetStore(store),
            exchange_id=exchange,
            symbols=symbol_list(symbols) or [],
            timeframe=Timeframe.parse(timeframe),
            since=parse_time(since, "--since"),
            until=parse_time(until, "--until"),
            base_url=base_url,
            max_retries=retries,
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
