"""The ``cappuccino`` command."""

from __future__ import annotations

from cappuccino.utils.threads import (
    configure_threads,
    prepare_allocator,
    prepare_openmp,
    resolve_threads,
)

prepare_openmp()  # before anything below loads torch (OpenMP reads it once); see utils.threads
prepare_allocator()  # large tensors reused, not unmapped and faulted in again; see utils.threads

import typer  # noqa: E402

from cappuccino import __version__  # noqa: E402
from cappuccino.cli import backtest as backtest_cmd  # noqa: E402
from cappuccino.cli import campaign as campaign_cmd  # noqa: E402
from cappuccino.cli import data as data_cmd  # noqa: E402
from cappuccino.cli import demo as demo_cmd  # noqa: E402
from cappuccino.cli import features as features_cmd  # noqa: E402
from cappuccino.cli import models as models_cmd  # noqa: E402
from cappuccino.cli import monitor as monitor_cmd  # noqa: E402
from cappuccino.cli import paper as paper_cmd  # noqa: E402
from cappuccino.cli import rl as rl_cmd  # noqa: E402
from cappuccino.cli import train as train_cmd  # noqa: E402
from cappuccino.cli import tune as tune_cmd  # noqa: E402
from cappuccino.cli.render import OneLineErrors, err_console  # noqa: E402
from cappuccino.utils.logging import configure_logging  # noqa: E402
from cappuccino.utils.progress import LogDisplay, RichDisplay, set_display  # noqa: E402

app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Cappuccino: validated market data, causal features, honest models.",
)
app.add_typer(data_cmd.app, name="data")
app.add_typer(features_cmd.app, name="features")
app.add_typer(models_cmd.app, name="models")
app.add_typer(campaign_cmd.app, name="campaign")
app.add_typer(rl_cmd.app, name="rl")
app.add_typer(tune_cmd.app, name="tune")
app.add_typer(paper_cmd.app, name="paper")
app.add_typer(monitor_cmd.report_app, name="report")
app.command("backtest")(backtest_cmd.backtest)
app.command("train")(train_cmd.train)
app.command("predict")(train_cmd.predict)
app.command("demo")(demo_cmd.demo)
app.command("dashboard")(monitor_cmd.dashboard)
app.command("monitor")(monitor_cmd.monitor)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR"),
    threads: str | None = typer.Option(
        None,
        "--threads",
        help="torch threads: 'auto' (the cores this process may use) or a count; default "
        "$CAPPUCCINO_THREADS, else auto. Workers of `tune --workers N` split the cores.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Cappuccino command-line interface."""
    try:
        configure_logging(log_level, err_console)
    except ValueError as exc:
        raise typer.BadParameter(
            str(exc).removeprefix("--log-level: "), param_hint="--log-level"
        ) from exc
    set_display(RichDisplay(err_console) if err_console.is_terminal else LogDisplay())
    try:
        configure_threads(resolve_threads(threads))
    except ValueError as exc:
        raise typer.BadParameter(
            str(exc).removeprefix("--threads: "), param_hint="--threads"
        ) from exc


if __name__ == "__main__":  # worker processes of `cappuccino tune --workers N` start here
    app()
