"""Output for the CLI: rich tables for people, one JSON document with ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from typer._click import Context  # typer >= 0.26 vendors click; usage errors are its own
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from cappuccino.config.loading import condense
from cappuccino.config.models import FEATURE_SET_NAMES
from cappuccino.data.errors import DataError
from cappuccino.reporting.table import Table
from cappuccino.utils.progress import steps

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


JSON_HELP = "print the result as exactly one JSON document on stdout (logs stay on stderr)"
BAD_INPUT, UNREACHABLE = 2, 3
TIMEFRAME_HELP = "bar interval in ccxt notation: 1m, 5m, 15m, 1h, 4h, 1d, ..."
STORE_HELP = "Parquet store folder (see `cappuccino data import`)"
FEATURE_SET_HELP = (
    f"feature set: {', '.join(FEATURE_SET_NAMES)}, optionally with longer timeframes such as "
    "+4h+1d (`cappuccino features list`)"
)
STUDY_HELP = "study name in the storage (default: the config's)"
STORAGE_HELP = (
    "SQLAlchemy URL of the study storage, e.g. sqlite:///runs/optuna.db or "
    "postgresql://user@host/db (password from CAPPUCCINO_STORAGE_PASSWORD only)"
)


def config_keys(model: type[BaseModel]) -> str:
    """The keys ``--set`` accepts for ``model``, nested sections as ``section.{a, b}``."""
    parts = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            parts.append(f"{name}.{{{config_keys(ann)}}}")
        else:
            parts.append(name)
    return ", ".join(parts)


def set_help(model: type[BaseModel], example: str) -> str:
    """Help of a ``--set`` option: the form, an example and every key."""
    return (
        f"override a config key, KEY=VALUE with a YAML value (repeatable), e.g. {example}. "
        f"Keys: {escape(config_keys(model))}"
    )


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with '; ', runs of blanks squeezed."""
    return "; ".join(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())


def say_error(message: str) -> None:
    """The one line of an error, on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True,
                      highlight=False)  # fmt: skip


def _classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for an error a user can cause or fix; None for a bug."""
    if isinstance(exc, ValidationError):
        return BAD_INPUT, condense(exc)
    if isinstance(exc, DataError | ValueError | LookupError):
        return BAD_INPUT, str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc)
    if isinstance(exc, IsADirectoryError):
        return BAD_INPUT, f"{exc.filename}: is a directory, expected a file"
    if isinstance(exc, NotADirectoryError):
        return BAD_INPUT, f"{exc.filename}: is a file, expected a directory"
    if isinstance(exc, FileNotFoundError):
        return BAD_INPUT, str(exc) if exc.filename is None else f"{exc.filename}: no such file"
    if isinstance(exc, PermissionError):
        return BAD_INPUT, f"{exc.filename}: permission denied"
    if isinstance(exc, ImportError):
        return BAD_INPUT, str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return BAD_INPUT, f"not text ({exc.reason} at byte {exc.start}); expected a CSV file"
    unreachable = _unreachable(exc)
    if unreachable is not None:
        return UNREACHABLE, unreachable
    return None


def _unreachable(exc: BaseException) -> str | None:
    """A service that could not be reached (database, exchange, tracking server)."""
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, sa.OperationalError):
        return f"database unreachable: {one_line(str(exc.orig or exc)).split('; ')[0]}"
    ccxt = sys.modules.get("ccxt")
    if ccxt is not None and isinstance(exc, ccxt.NetworkError):
        return f"exchange unreachable: {type(exc).__name__}: {one_line(str(exc))[:300]}"
    broker = sys.modules.get("cappuccino.live.broker")
    if broker is not None and isinstance(exc, broker.BrokerUnavailable):
        return f"broker unreachable: {one_line(str(exc))[:300]}"
    mlflow_exc = sys.modules.get("mlflow.exceptions")
    if mlflow_exc is not None and isinstance(exc, mlflow_exc.MlflowException):
        text = one_line(str(exc))
        if "API request to" in text and "failed with exception" in text:
            url = text.split("API request to ", 1)[1].split(" failed", 1)[0]
            why = "connection refused" if "refused" in text.lower() else "no answer"
            return f"MLflow tracking server unreachable: {url.split('/api/')[0]} ({why})"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"service unreachable: {type(exc).__name__}: {exc}"
    return None


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn errors a user can cause into one line on stderr: exit 2 for bad input, 3 for an
    unreachable service; a bug keeps its traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            known = _classify(exc)
            if known is None:
                raise
            code, message = known
            say_error(message)
            raise typer.Exit(code) from exc

    return wrapper


@contextmanager
def progress(description: str, enabled: bool) -> Iterator[None]:
    """A spinner on stderr while long work runs, on a terminal (off with --json); the
    counted loops inside show their own bars (:mod:`cappuccino.utils.progress`)."""
    if not enabled:
        yield
        return
    with steps(description, None):
        yield


class OneLineErrors(TyperGroup):
    """The top-level command: a usage error (unknown option, bad value, missing argument) is
    one line on stderr and exit 2, not click's boxed usage block."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            usage_error(exc)

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            usage_error(exc)


def usage_error(exc: UsageError) -> NoReturn:
    """Report a click usage error in one line and exit 2 (a bare group still shows its help)."""
    if isinstance(exc, NoArgsIsHelpError):
        raise exc
    where = "cappuccino"
    if exc.ctx is not None:  # the program's own name, also under a test runner ("root")
        root = exc.ctx.find_root().info_name or ""
        where += exc.ctx.command_path[len(root) :]
    say_error(f"{where}: {exc.format_message()} (see {where} --help)")
    raise typer.Exit(BAD_INPUT)
