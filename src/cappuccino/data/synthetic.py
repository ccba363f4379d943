"""A synthetic universe for scale tests (``cappuccino data synthetic``): many symbols of
seeded geometric random walks whose drift and volatility switch between market regimes.

Never a stand-in for real data: the bars go to a store of their own, marked synthetic
(:meth:`~cappuccino.data.store.ParquetStore.mark_synthetic`), and such a store refuses real
imports and downloads, so nothing trained or judged on real bars can read them.

The model, per bar of length ``dt`` years (``timeframe / 365 days``):

- One market regime for all symbols, a Markov chain over :data:`REGIMES` (``bull``,
  ``bear``, ``calm``) whose mean durations are ``REGIMES[k].days``; it starts in ``calm``.
- Per symbol ``i``: a beta ``b_i ~ U(0.6, 1.4)`` to the market factor and an idiosyncratic
  annual volatility ``s_i ~ U(0.3, 0.9)``. In regime ``k`` (annual drift ``mu_k``, market
  volatility ``v_k``, idiosyncratic multiplier ``m_k``) the log return of bar t is

  ``r = (b_i mu_k - (b_i^2 v_k^2 + m_k^2 s_i^2) / 2) dt + sqrt(dt) (b_i v_k z_t + m_k s_i e_it)``

  with ``z_t`` (shared) and ``e_it`` independent standard normals: a geometric Brownian
  motion within each regime (the ``-sigma^2/2`` term makes ``mu_k`` the drift of the price,
  not of its log).
- Start prices ``10^U(-2, 4)``; ``open`` is the previous close; ``high``/``low`` extend the
  bar's body by ``|N(0, 0.5 sigma_bar)|`` in log terms; ``volume`` is log-normal around a
  per-symbol level and grows with ``|r| / sigma_bar``; ``quote_volume = volume * close``;
  ``trades`` is a Poisson draw proportional to volume. No gaps, no defects.

Symbols are ``SYN000/USDT``, ``SYN001/USDT``, ...; one seed gives the same bars on every
machine (NumPy's PCG64; symbol ``i`` draws from its own stream ``seed, i``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from cappuccino.data.schema import CANONICAL_COLUMNS, CANONICAL_SCHEMA, Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.utils.progress import steps

YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True)
class Regime:
    name: str
    mu: float  # annual drift of the market factor
    vol: float  # annual volatility of the market factor
    idio: float  # multiplier of the symbols' idiosyncratic volatility
    days: float  # mean duration


REGIMES: tuple[Regime, ...] = (
    Regime("bull", mu=0.8, vol=0.5, idio=1.0, days=60.0),
    Regime("bear", mu=-0.7, vol=0.9, idio=1.4, days=30.0),
    Regime("calm", mu=0.0, vol=0.3, idio=0.7, days=45.0),
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What defines a synthetic universe; stored in the store's marker."""

    symbols: int
    bars: int
    timeframe: str = "1h"
    start: str = "2018-01-01T00:00:00+00:00"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.symbols < 1 or self.symbols > 1000:
            raise ValueError(f"--symbols: got {self.symbols}, expected 1 to 1000")
        if self.bars < 2:
            raise ValueError(f"--bars: got {self.bars}, expected >= 2")
        Timeframe.parse(self.timeframe)
        if self.seed < 0:
            raise ValueError(f"--seed: got {self.seed}, expected >= 0")

    @property
    def names(self) -> list[str]:
        return [f"SYN{i:03d}/USDT" for i in range(self.symbols)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def regime_path(spec: SyntheticSpec) -> np.ndarray:
    """Regime index per bar (into :data:`REGIMES`), shared by every symbol."""
    tf = Timeframe.parse(spec.timeframe)
    rng = np.random.default_rng([spec.seed, 1_000_003])
    leave = np.array([tf.ms / (r.days * 86_400_000) for r in REGIMES])  # P(switch) per bar
    state = np.empty(spec.bars, dtype=np.int64)
    k = len(REGIMES) - 1  # calm
    u = rng.random(spec.bars)
    pick = rng.integers(0, len(REGIMES) - 1, spec.bars)
    for t in range(spec.bars):
        if u[t] < leave[k]:
            k = int(pick[t] + (pick[t] >= k))  # one of the other regimes, uniformly
        state[t] = k
    return state


def market_shocks(spec: SyntheticSpec) -> np.ndarray:
    """The shared standard-normal market shock ``z_t`` per bar."""
    return np.random.default_rng([spec.seed, 1_000_033]).standard_normal(spec.bars)


def symbol_parameters(spec: SyntheticSpec, i: int) -> tuple[np.random.Generator, float, float]:
    """Symbol ``i``'s random stream, beta and idiosyncratic annual volatility."""
    rng = np.random.default_rng([spec.seed, i])
    return rng, float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.3, 0.9))


def symbol_bars(
    spec: SyntheticSpec, i: int, regimes: np.ndarray, shocks: np.ndarray
) -> pl.DataFrame:
    """Canonical bars of symbol ``i`` (module docstring)."""
    tf = Timeframe.parse(spec.timeframe)
    dt = tf.ms / YEAR_MS
    rng, beta, idio = symbol_parameters(spec, i)
    mu = np.array([r.mu for r in REGIMES])[regimes]
    vol = np.array([r.vol for r in REGIMES])[regimes]
    mult = np.array([r.idio for r in REGIMES])[regimes]
    var = beta**2 * vol**2 + (mult * idio) ** 2
    sigma_bar = np.sqrt(var * dt)
    eps = rng.standard_normal(spec.bars)
    r = (beta * mu - var / 2) * dt + np.sqrt(dt) * (beta * vol * shocks + mult * idio * eps)
    p0 = 10 ** rng.uniform(-2, 4)
    close = p0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[p0], close[:-1]])
    up = np.abs(rng.standard_normal(spec.bars)) * 0.5 * sigma_bar
    down = np.abs(rng.standard_normal(spec.bars)) * 0.5 * sigma_bar
    high = np.maximum(open_, close) * np.exp(up)
    low = np.minimum(open_, close) * np.exp(-down)
    level = 10 ** rng.uniform(2, 6)
    volume = level * rng.lognormal(0.0, 0.5, spec.bars) * (1 + np.abs(r) / sigma_bar)
    trades = rng.poisson(volume / level * 200).astype(np.int64)
    t0 = int(datetime.fromisoformat(spec.start).astimezone(UTC).timestamp() * 1000)
    t0 = t0 // tf.ms * tf.ms
    return pl.DataFrame(
        {
            "timestamp": pl.Series(t0 + tf.ms * np.arange(spec.bars, dtype=np.int64))
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC"),
            "symbol": [spec.names[i]] * spec.bars,
            "open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "quote_volume": volume * close, "trades": trades,
            "filled": np.zeros(spec.bars, dtype=bool),
        }
    ).select(CANONICAL_COLUMNS).cast(dict(CANONICAL_SCHEMA))  # type: ignore[arg-type]  # fmt: skip


def synthetic_universe(spec: SyntheticSpec) -> pl.DataFrame:
    """Every symbol's bars in one frame (small universes and tests; the store writer goes
    one symbol at a time)."""
    regimes, shocks = regime_path(spec), market_shocks(spec)
    return pl.concat([symbol_bars(spec, i, regimes, shocks) for i in range(spec.symbols)])


@dataclass
class SyntheticResult:
    spec: dict[str, Any]
    store: str
    symbols: int
    bars_per_symbol: int
    rows_new: int
    regime_share: dict[str, float]
    first: str
    last: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_synthetic(store: ParquetStore, spec: SyntheticSpec) -> SyntheticResult:
    """Generate ``spec``'s universe into ``store`` (marked synthetic first; a store of real
    bars is refused), one symbol in memory at a time. Idempotent: a second run writes
    nothing new."""
    store.mark_synthetic(spec.to_dict())
    tf = Timeframe.parse(spec.timeframe)
    regimes, shocks = regime_path(spec), market_shocks(spec)
    new = 0
    first = last = ""
    with steps("synthetic symbols", spec.symbols) as bar:
        for i in range(spec.symbols):
            bars = symbol_bars(spec, i, regimes, shocks)
            (up,) = store.upsert(bars, tf)
            new += up.rows_new
            first, last = bars["timestamp"][0].isoformat(), bars["timestamp"][-1].isoformat()
            bar.advance(note=spec.names[i])
    share = {r.name: float(np.mean(regimes == k)) for k, r in enumerate(REGIMES)}
    return SyntheticResult(spec=spec.to_dict(), store=str(store.root), symbols=spec.symbols,
                           bars_per_symbol=spec.bars, rows_new=new, regime_share=share,
                           first=first, last=last)  # fmt: skip
