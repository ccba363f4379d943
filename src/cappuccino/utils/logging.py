"""Logging set-up for the CLI; library code only calls ``logging.getLogger``."""

from __future__ import annotations

import logging

from rich.logging import RichHandler


def configure_logging(level: str = "INFO") -> None:
    """Route the ``cappuccino`` logger through rich to stderr at ``level``."""
    logger = logging.getLogger("cappuccino")
    logger.setLevel(level.upper())
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        logger.addHandler(handler)
    logger.propagate = False
