"""The ``cappuccino`` command."""

from __future__ import annotations

import typer

from cappuccino import __version__
from cappuccino.cli import backtest as backtest_cmd
from cappuccino.cli import campaign as campaign_cmd
from cappuccino.cli import data as data_cmd
from cappuccino.cli import demo as demo_cmd
from cappuccino.cli import features as features_cmd
from cappuccino.cli import models as models_cmd
from cappuccino.cli import rl as rl_cmd
from cappuccino.cli import train as train_cmd
from cappuccino.cli import tune as tune_cmd
from cappuccino.utils.logging import configure_logging

app = typer.Typer(
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
app.command("backtest")(backtest_cmd.backtest)
app.command("train")(train_cmd.train)
app.command("predict")(train_cmd.predict)
app.command("demo")(demo_cmd.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """Cappuccino command-line interface."""
    configure_logging(log_level)


if __name__ == "__main__":  # worker processes of `cappuccino tune --workers N` start here
    app()
