"""Logging set-up for the CLI; library code only calls ``logging.getLogger``."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
THIRD_PARTY = ("mlflow", "alembic", "optuna", "urllib3", "ccxt")  # their chatter follows ours


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Plain one-line records on whatever ``sys.stderr`` is at the time of the record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "INFO", console: Console | None = None) -> None:
    """Route the ``cappuccino`` logger to **stderr** at ``level`` (stdout is for results:
    ``--json`` stays one document at any level). ``ValueError`` names a bad level.

    On a terminal the records go through rich (on ``console``, the one progress bars draw on,
    so they do not garble each other); otherwise (files, pipes, CI) each record is one plain
    line: ``2026-12-01 23:59:59 INFO cappuccino.progress: epochs 3/10 (30%), ...``.
    Progress lines (``cappuccino.progress``) show at every level but ERROR."""
    name = str(level).strip().upper()
    if name not in LEVELS:
        raise ValueError(f"--log-level: got {level!r}, expected one of {', '.join(LEVELS)}")
    logger = logging.getLogger("cappuccino")
    logger.setLevel(name)
    for old in [h for h in logger.handlers if getattr(h, "_cappuccino", False)]:
        logger.removeHandler(old)
    console = console or Console(stderr=True)
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False,
                              markup=False)  # fmt: skip
    else:
        handler = StderrHandler()
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    setattr(handler, "_cappuccino", True)  # noqa: B010 (marks our own handler)
    logger.addHandler(handler)
    logger.propagate = False
    logging.getLogger("cappuccino.progress").setLevel("ERROR" if name == "ERROR" else "INFO")
    for other in THIRD_PARTY:  # e.g. MLflow's "Creating initial MLflow database tables" INFO
        logging.getLogger(other).setLevel(name)
