"""One metric set (leaf, numpy only). Units and conventions are in every name and docstring.

Conventions:
- ``equity``: portfolio value in the quote currency at each bar's close, length ``n + 1``
  (the starting value first), so there are ``n`` per-bar returns.
- Returns are **simple** per-bar returns ``r_t = e_t / e_{t-1} - 1`` unless a name says log.
- Annualisation uses ``periods_per_year`` bars (1h crypto trading 24/7: 8,760).
- Sharpe = mean(r) / std(r, ddof=1) * sqrt(periods_per_year), risk-free rate 0. The one
  Sharpe definition used everywhere in Cappuccino.
- Sortino = mean(r) / downside deviation * sqrt(periods_per_year), downside deviation
  = sqrt(mean(min(r, 0)^2)) over all bars (target 0).
- Drawdowns are fractions of the running peak, reported as negative numbers
  (-0.25 = 25 % below the peak).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _as_array(x: npt.ArrayLike, name: str) -> Array:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d series, got shape {a.shape}")
    return a


def simple_returns(equity: npt.ArrayLike) -> Array:
    """Per-bar simple returns ``e_t / e_{t-1} - 1`` (length ``len(equity) - 1``)."""
    e = _as_array(equity, "equity")
    if (e <= 0).any():
        raise ValueError("equity: every value must be > 0 to form returns")
    return e[1:] / e[:-1] - 1.0


def log_returns(equity: npt.ArrayLike) -> Array:
    """Per-bar log returns ``ln(e_t / e_{t-1})``."""
    return np.log1p(simple_returns(equity))


def total_return(equity: npt.ArrayLike) -> float:
    """Simple return over the whole series, fraction."""
    e = _as_array(equity, "equity")
    return float(e[-1] / e[0] - 1.0)


def sharpe_ratio(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised Sharpe of per-bar **simple** returns (risk-free 0, ddof 1); 0 if flat."""
    r = _as_array(returns, "returns")
    if r.size < 2:
        return 0.0
    sd = float(r.std(ddof=1))
    if sd < 1e-15:
        return 0.0
    return float(r.mean() / sd * math.sqrt(periods_per_year))


def sortino_ratio(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised Sortino of per-bar simple returns (target 0); 0 if no downside."""
    r = _as_array(returns, "returns")
    if r.size == 0:
        return 0.0
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if dd < 1e-15:
        return 0.0
    return float(r.mean() / dd * math.sqrt(periods_per_year))


def annualised_volatility(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """std(simple returns, ddof=1) * sqrt(periods_per_year), fraction per year."""
    r = _as_array(returns, "returns")
    if r.size < 2:
        return 0.0
    return float(r.std(ddof=1) * math.sqrt(periods_per_year))


def drawdown(equity: npt.ArrayLike) -> Array:
    """Per-bar drawdown ``e_t / max_{s<=t} e_s - 1`` (<= 0)."""
    e = _as_array(equity, "equity")
    return e / np.maximum.accumulate(e) - 1.0


def max_drawdown(equity: npt.ArrayLike) -> float:
    """Deepest drawdown, a fraction <= 0 (-0.25 = 25 % below the peak)."""
    return float(drawdown(equity).min())


def cagr(equity: npt.ArrayLike, periods_per_year: float) -> float:
    """Compound annual growth rate over ``len(equity) - 1`` bars, fraction per year."""
    e = _as_array(equity, "equity")
    n = e.size - 1
    if n <= 0:
        return 0.0
    return float((e[-1] / e[0]) ** (periods_per_year / n) - 1.0)


def calmar_ratio(equity: npt.ArrayLike, periods_per_year: float) -> float:
    """CAGR / |max drawdown|; 0 when there is no drawdown."""
    mdd = max_drawdown(equity)
    if mdd > -1e-15:
        return 0.0
    return cagr(equity, periods_per_year) / abs(mdd)


def annualised_turnover(
    traded_notional: npt.ArrayLike, equity: npt.ArrayLike, periods_per_year: float
) -> float:
    """Traded notional (buys + sells) per bar over equity at the bar's start, summed and
    annualised: multiples of equity traded per year. ``traded_notional`` has one value per
    bar (length ``len(equity) - 1``)."""
    t = _as_array(traded_notional, "traded_notional")
    e = _as_array(equity, "equity")
    if t.size != e.size - 1:
        raise ValueError(
            f"traded_notional: got {t.size} values, expected one per bar ({e.size - 1})"
        )
    if t.size == 0:
        return 0.0
    return float((t / e[:-1]).mean() * periods_per_year)


def exposure(weights: npt.ArrayLike) -> float:
    """Mean invested fraction of equity (sum of position weights) over bars; ``weights``
    is ``(n_bars, n_assets)``."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights: expected (bars, assets), got shape {w.shape}")
    return float(w.sum(axis=1).mean()) if w.size else 0.0


def hit_rate(returns: npt.ArrayLike) -> float:
    """Fraction of bars with a positive return among bars whose return is not zero."""
    r = _as_array(returns, "returns")
    nz = r[r != 0.0]
    return float((nz > 0).mean()) if nz.size else 0.0


MIN_DAYS_ANNUALISED = 30
"""Fewest days of bars for which :func:`summarize` reports CAGR and Calmar."""


def summarize(
    equity: npt.ArrayLike,
    *,
    periods_per_year: float,
    traded_notional: npt.ArrayLike | None = None,
    fees: npt.ArrayLike | None = None,
    weights: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """The standard metric set for one equity curve (see module conventions).

    Keys: ``total_return``, ``cagr``, ``sharpe``, ``sortino``, ``max_drawdown``, ``calmar``,
    ``volatility`` (annualised), ``turnover`` (annualised, multiples of equity), ``fees_paid``
    (quote currency), ``exposure`` (mean invested fraction), ``hit_rate``,
    ``periods_per_year``, ``n_bars``, ``final_equity``, ``notes``. ``cagr`` and ``calmar`` are
    None under :data:`MIN_DAYS_ANNUALISED` days of bars, with a note saying so.
    """
    e = _as_array(equity, "equity")
    r = simple_returns(e)
    days = r.size * 365.0 / periods_per_year
    short = days < MIN_DAYS_ANNUALISED
    notes = (
        [f"cagr, calmar: null: {days:.3g} days of bars, under {MIN_DAYS_ANNUALISED} (compounding "
         "so short a period to a year means nothing)"] if short else []
    )  # fmt: skip
    return {
        "total_return": total_return(e),
        "cagr": None if short else cagr(e, periods_per_year),
        "sharpe": sharpe_ratio(r, periods_per_year),
        "sortino": sortino_ratio(r, periods_per_year),
        "max_drawdown": max_drawdown(e),
        "calmar": None if short else calmar_ratio(e, periods_per_year),
        "volatility": annualised_volatility(r, periods_per_year),
        "turnover": (
            annualised_turnover(traded_notional, e, periods_per_year)
            if traded_notional is not None
            else 0.0
        ),
        "fees_paid": float(np.sum(_as_array(fees, "fees"))) if fees is not None else 0.0,
        "exposure": exposure(weights) if weights is not None else 0.0,
        "hit_rate": hit_rate(r),
        "periods_per_year": periods_per_year,
        "n_bars": int(r.size),
        "final_equity": float(e[-1]),
        "notes": notes,
    }
