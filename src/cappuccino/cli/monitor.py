"""``cappuccino dashboard``, ``cappuccino monitor`` and ``cappuccino report status|runs``:
read-only views of studies, paper sessions, MLflow runs and the machine."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import typer

from cappuccino.cli.render import JSON_HELP, console, emit_json, err_console, fail_cleanly

STORAGES_HELP = ("Optuna storage URL to watch (repeatable), e.g. sqlite:///runs/tune/optuna.db; "
                 "password from CAPPUCCINO_STORAGE_PASSWORD only")  # fmt: skip
STATES_HELP = "paper session state file to watch (repeatable)"
MLFLOW_HELP = "MLflow tracking URI, e.g. sqlite:///runs/demo/mlflow.db (latest runs)"
GRACE_HELP = "seconds a closed bar may take to be processed (the paper health rule)"

report_app = typer.Typer(no_args_is_help=True,
                         help="Written reports: `report status` (the status report) and "
                              "`report runs` (MLflow runs side by side).")  # fmt: skip


def _monitor(storage: list[str] | None, state: list[Path] | None, mlflow: str | None,
             experiment: list[str] | None, grace: float, out_dir: Path | None = None,
             machine: bool = True, explain: list[Path] | None = None) -> Any:  # fmt: skip
    from cappuccino.monitoring import Monitor

    if not (storage or state or mlflow):
        raise ValueError("--storage, --state or --mlflow: got none, expected at least one source")
    if grace < 0:
        raise ValueError(f"--grace: got {grace!r}, expected seconds >= 0")
    return Monitor(storage, state, mlflow, experiments=experiment, grace_s=grace,
                   output_dir=out_dir, machine=machine, explanations=explain)  # fmt: skip


def _sigterm_as_interrupt() -> None:
    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@fail_cleanly
def dashboard(
    storage: list[str] | None = typer.Option(None, "--storage", help=STORAGES_HELP),
    state: list[Path] | None = typer.Option(None, "--state", help=STATES_HELP),
    mlflow: str | None = typer.Option(None, "--mlflow", help=MLFLOW_HELP),
    experiment: list[str] | None = typer.Option(
        None, "--experiment", help="MLflow experiment to show (repeatable; default all)"
    ),
    port: int = typer.Option(8050, "--port", help="TCP port"),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="address to bind; anything but loopback requires CAPPUCCINO_DASHBOARD_TOKEN",
    ),
    html: Path | None = typer.Option(
        None, "--html", help="write the page once as one static file (a snapshot) and exit"
    ),
    refresh: float = typer.Option(5.0, "--refresh", help="seconds between page refreshes"),
    grace: float = typer.Option(30.0, "--grace", help=GRACE_HELP),
    explain: list[Path] | None = typer.Option(
        None, "--explain", help="an explain.json of `rl explain` to show (repeatable)"
    ),
) -> None:
    """A local web page of the snapshot with plots, refreshing itself; /api/status serves
    the same snapshot as JSON. It changes nothing. With --html, one static file instead."""
    from cappuccino.monitoring.dashboard import check_bind, make_app, serve, write_html

    if not 0 < port < 65536:
        raise ValueError(f"--port: got {port}, expected 1 to 65535")
    if not 0.2 <= refresh <= 3600:
        raise ValueError(f"--refresh: got {refresh!r}, expected 0.2 to 3600 seconds")
    token = None if html else check_bind(host)
    m = _monitor(storage, state, mlflow, experiment, grace,
                 html.parent if html else None, explain=explain)  # fmt: skip
    try:
        if html is not None:
            snap = m.snapshot()
            write_html(snap, html)
            console.print(f"dashboard snapshot: {html} ({snap.status})")
            return
        app = make_app(m, token=token, refresh_s=refresh)
        err_console.print(f"dashboard on http://{host}:{port}/ (read-only; Ctrl-C stops it)")
        _sigterm_as_interrupt()
        with contextlib.suppress(KeyboardInterrupt):
            serve(app, host, port)
    finally:
        m.close()


@fail_cleanly
def monitor(
    storage: list[str] | None = typer.Option(None, "--storage", help=STORAGES_HELP),
    state: list[Path] | None = typer.Option(None, "--state", help=STATES_HELP),
    mlflow: str | None = typer.Option(None, "--mlflow", help=MLFLOW_HELP),
    experiment: list[str] | None = typer.Option(None, "--experiment", help="MLflow experiment"),
    interval: float = typer.Option(2.0, "--interval", help="seconds between refreshes"),
    once: bool = typer.Option(
        False, "--once", help="print one snapshot and exit: 1 when anything is red (for cron)"
    ),
    grace: float = typer.Option(30.0, "--grace", help=GRACE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (with --once)"),
) -> None:
    """The terminal view of the snapshot (same health rules as the dashboard); --once exits
    1 when anything is red, so cron or systemd can alert on it."""
    from rich.live import Live

    from cappuccino.monitoring.terminal import renderable

    if not 0.05 <= interval <= 3600:
        raise ValueError(f"--interval: got {interval!r}, expected 0.05 to 3600 seconds")
    if as_json and not once:
        raise ValueError("--json: needs --once (one snapshot, one JSON document)")
    m = _monitor(storage, state, mlflow, experiment, grace)
    try:
        if once:
            snap = m.snapshot()
            if as_json:
                emit_json(snap.to_dict())
            else:
                console.print(renderable(snap.to_dict()))
            if snap.status == "red":
                raise typer.Exit(1)
            return
        _sigterm_as_interrupt()
        try:
            with Live(renderable(m.snapshot().to_dict()), console=console,
                      refresh_per_second=max(1.0, 1.0 / interval), screen=False) as live:  # fmt: skip
                while True:
                    time.sleep(interval)
                    live.update(renderable(m.snapshot().to_dict()))
        except KeyboardInterrupt:
            pass
    finally:
        m.close()


@report_app.command("status")
@fail_cleanly
def report_status(
    storage: list[str] | None = typer.Option(None, "--storage", help=STORAGES_HELP),
    state: list[Path] | None = typer.Option(None, "--state", help=STATES_HELP),
    mlflow: str | None = typer.Option(None, "--mlflow", help=MLFLOW_HELP),
    ab: Path | None = typer.Option(
        None, "--ab", help="an A/B campaign's compare.json (`cappuccino campaign compare`)"
    ),
    out: Path = typer.Option(..., "--out", help="FILE.md or FILE.html"),
    grace: float = typer.Option(30.0, "--grace", help=GRACE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The written status report: executive summary, study statistics, top trials, A/B
    verdicts with intervals, health of workers and paper sessions, next actions."""
    from cappuccino.monitoring import report

    if out.suffix.lower() not in (".md", ".html", ".htm"):
        raise ValueError(f"--out: {out}: expected a .md or .html file")
    compare = _read_json(ab, "--ab") if ab else None
    m = _monitor(storage, state, mlflow, None, grace, out.parent, machine=False)
    try:
        r = report.build(m.snapshot().to_dict(), compare)
    finally:
        m.close()
    report.write(r, out)
    if as_json:
        emit_json({"out": str(out), "status": r["snapshot"]["status"],
                   "next_actions": r["next_actions"]})  # fmt: skip
        return
    console.print(f"status report: {out} ({r['snapshot']['status']})")
    for i, a in enumerate(r["next_actions"], 1):
        console.print(f"  {i}. {a}", highlight=False, markup=False)


def _read_json(path: Path, option: str) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"{option}: {path}: no such file")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{option}: {path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or "arms" not in doc:
        raise ValueError(f"{option}: {path}: expected a campaign's compare.json (with 'arms')")
    return doc


@report_app.command("runs")
@fail_cleanly
def report_runs(
    tracking_uri: str = typer.Option(..., "--tracking-uri", help=MLFLOW_HELP),
    experiment: str | None = typer.Option(None, "--experiment", help="experiment name"),
    runs: str | None = typer.Option(None, "--runs", help="run ids, comma-separated"),
    limit: int = typer.Option(10, "--limit", help="newest runs to compare without --runs"),
    out: Path = typer.Option(..., "--out", help="FILE.html"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Chosen MLflow runs side by side: the params that differ, final and best metrics, and
    training curves overlaid."""
    from cappuccino.monitoring.runs import compare_runs, write_runs_html

    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out: {out}: expected a .html file")
    if not 1 <= limit <= 200:
        raise ValueError(f"--limit: got {limit}, expected 1 to 200")
    ids = [r.strip() for r in runs.split(",") if r.strip()] if runs else None
    doc = compare_runs(tracking_uri, experiment, ids, limit)
    write_runs_html(doc, out)
    if as_json:
        emit_json({"out": str(out), **{k: v for k, v in doc.items() if k != "curves"}})
        return
    console.print(f"runs report: {out} ({len(doc['runs'])} runs, "
                  f"{len(doc['params_differ'])} params differ)")  # fmt: skip
