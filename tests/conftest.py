"""Shared fixtures: the real Binance exports in ../shared/data and small synthetic bars."""

from __future__ import annotations

from cappuccino.utils.threads import prepare_allocator, prepare_openmp

prepare_openmp()  # as the cappuccino command does, before torch loads (see utils.threads)
prepare_allocator()

import shutil  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from cappuccino.data.schema import CANONICAL_SCHEMA  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "binance_1h"
# what issue 3 asks every backtest JSON to carry (written out here, not taken from the code)
BACKTEST_JSON_KEYS = (
    "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "volatility",
    "turnover", "fees_paid", "periods_per_year", "n_bars",
)  # fmt: skip


def shared_file(pair: str) -> Path:
    """Path of a real export; a missing file fails the test (never skips)."""
    p = SHARED / f"Binance_{pair}_1h.csv"
    assert p.is_file(), f"shared data missing: {p} (tests need ../shared/data next to the repo)"
    return p


def sample_store(folder: Path) -> Path:
    """The bundled 7-pair sample imported into a new store ``folder / 'store'``."""
    from cappuccino.data.importing import import_files
    from cappuccino.data.sample import sample_path
    from cappuccino.data.store import ParquetStore

    root = folder / "store"
    import_files([sample_path()], ParquetStore(root))
    return root


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"shared data missing: {SHARED}"
    return SHARED


def make_bars(
    symbol: str = "AAA/USDT",
    n: int = 300,
    *,
    start: datetime = datetime(2021, 1, 1, tzinfo=UTC),
    seed: int = 0,
    step_ms: int = 3_600_000,
) -> pl.DataFrame:
    """A random-walk canonical bar frame with consistent OHLC."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    t0 = int(start.timestamp() * 1000)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(t0 + step_ms * np.arange(n))
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC"),
            "symbol": [symbol] * n,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 100, n),
            "quote_volume": rng.uniform(100, 10000, n),
            "trades": rng.integers(1, 1000, n),
            "filled": [False] * n,
        }
    ).cast(CANONICAL_SCHEMA)


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema created once per session (MLflow's migrations
    take about 9 s on a fresh file; the tests that need that step keep it: test_trackers)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(_mlflow_template: Path) -> Callable[[Path], str]:
    """``mlflow_store(path)``: an empty, migrated MLflow SQLite store at ``path``; its URI."""

    def make(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_mlflow_template, path)
        return f"sqlite:///{path}"

    return make


# --- the socket guard: tests talk to loopback fakes only ------------------------------------

_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def _is_loopback(host: object) -> bool:
    import ipaddress

    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a name that is not loopback's: it would need DNS, also refused


class NonLoopbackConnection(RuntimeError):
    """A test tried to reach beyond 127.0.0.0/8 and ::1."""


@pytest.fixture(autouse=True, scope="session")
def socket_guard() -> Iterator[None]:
    """Every test in this process may open connections to loopback addresses only (AF_UNIX
    sockets are local too); any other address raises :class:`NonLoopbackConnection`."""
    import socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not _is_loopback(host):
                raise NonLoopbackConnection(
                    f"socket guard: a test tried to connect to {address!r}; tests talk to "
                    "loopback fakes only"
                )

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
