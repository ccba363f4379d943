"""Output for the CLI: rich tables for people, one JSON document with ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from cappuccino.data.errors import DataError
from cappuccino.reporting.table import Table

# Piped or captured stdout (logs, CI, `| less`) gets every column at full width, never cut.
console = Console(width=None if sys.stdout.isatty() else 100_000)
err_console = Console(stderr=True, soft_wrap=True)
P = ParamSpec("P")
R = TypeVar("R")


def symbol_list(values: Sequence[str] | None) -> list[str] | None:
    """``--symbols`` as typed: repeated flags, comma lists or both (``-s BTC/USDT,ETH/USDT
    -s SOL/USDT``); None when none was given."""
    if not values:
        return None
    out = [s.strip() for v in values for s in v.split(",") if s.strip()]
    return out or None


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO date or time given to ``option`` (UTC unless it names a zone)."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{option}: got {text!r}, expected an ISO date or time such as 2021-01-31 or "
            "2021-01-31T12:00"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def emit_json(doc: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def table(rows: Sequence[dict[str, Any]], title: str, columns: Sequence[str] | None = None) -> None:
    """Render ``rows`` with ``columns`` (default: keys of the first row) as a
    :class:`~cappuccino.reporting.table.Table`: metric columns in their registered format."""
    console.print(Table.from_records(rows, columns, title=title).rich())


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn input errors into a one-line message on stderr and exit code 2 (no traceback)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (DataError, ValidationError, ValueError, FileNotFoundError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(2) from exc

    return wrapper


@contextmanager
def progress(description: str, enabled: bool) -> Iterator[None]:
    """A spinner on stderr while long work runs (off with --json)."""
    if not enabled:
        yield
        return
    with err_console.status(description):
        yield
