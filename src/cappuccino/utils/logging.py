"""Logging set-up for the CLI; library code only calls ``logging.getLogger``."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
THIRD_PARTY = ("mlflow", "alembic", "optuna", "urllib3", "ccxt")  # their chatter follows ours


def configure_logging(level: str = "INFO") -> None:
    """Route the ``cappuccino`` logger through rich to **stderr** at ``level`` (stdout is for
    results: ``--json`` stays one document at any level). ``ValueError`` names a bad level."""
    name = str(level).strip().upper()
    if name not in LEVELS:
        raise ValueError(f"--log-level: got {level!r}, expected one of {', '.join(LEVELS)}")
    logger = logging.getLogger("cappuccino")
    logger.setLevel(name)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
        )
        logger.addHandler(handler)
    logger.propagate = False
    for other in THIRD_PARTY:  # e.g. MLflow's "Creating initial MLflow database tables" INFO
        logging.getLogger(other).setLevel(name)
