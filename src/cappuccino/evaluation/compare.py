"""A/B statistics: confidence intervals, paired tests and multiple-comparison control for
comparing training arms over seeds, plus a block bootstrap over bars.

Conventions:

- Student's t distribution from the regularised incomplete beta function (continued
  fraction, Lentz's method); ``t_cdf`` agrees with ``scipy.stats.t.cdf`` to 1e-10.
- ``mean_ci``: the mean with a two-sided t interval (``n - 1`` degrees of freedom).
- ``paired_t_test``: ``H0: mean(a - b) = 0`` over pairs (seeds), two-sided.
- ``welch_t_test``: unequal variances, Welch-Satterthwaite degrees of freedom, two-sided.
- ``block_bootstrap_p``: two-sided p-value of ``H0: mean(d) = 0`` for a per-bar series
  ``d`` (e.g. the difference of two arms' seed-averaged returns): the series is centred and
  resampled in circular blocks (autocorrelation kept within blocks); ``p`` is the share of
  resampled means at least as far from 0 as the observed one (with the +1 correction).
- ``holm``: Holm-Bonferroni adjusted p-values (family-wise error control, step-down).
- ``steps_to_reach``: the first timestep at which a trailing mean of a learning curve
  reaches a level (sample efficiency), None if never.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """Regularised incomplete beta ``I_x(a, b)``; ``y``: ``1 - x`` when the caller has it
    exactly (near ``x = 1`` the subtraction loses digits)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x: got {x}, expected 0 <= x <= 1")
    y = 1.0 - x if y is None else y
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, y) / b


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df: got {df}, expected > 0")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t (bisection on :func:`t_cdf`, to 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q: got {q}, expected 0 < q < 1")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > q:
        lo *= 2.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    while hi - lo > 1e-12 * max(1.0, abs(lo)):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return 0.5 * (lo + hi)


def _finite(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or not np.isfinite(a).all():
        raise ValueError(f"{name}: expected a 1-d array of finite values, got {a!r}")
    return a


def mean_ci(x: npt.ArrayLike, level: float = 0.95) -> dict[str, float]:
    """``{mean, std, low, high, n}``: the sample mean and its two-sided t interval."""
    a = _finite(x, "x")
    n = a.size
    if n < 2:
        raise ValueError(f"mean_ci: {n} value(s), expected >= 2")
    m, s = float(a.mean()), float(a.std(ddof=1))
    half = t_ppf(0.5 + level / 2.0, n - 1) * s / math.sqrt(n)
    return {"mean": m, "std": s, "low": m - half, "high": m + half, "n": float(n)}


def paired_t_test(a: npt.ArrayLike, b: npt.ArrayLike) -> dict[str, float]:
    """Two-sided paired t test of ``mean(a - b) = 0``: ``{diff, t, df, p}``."""
    x, y = _finite(a, "a"), _finite(b, "b")
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"paired_t_test: {x.size} and {y.size} values, expected equal, >= 2")
    d = x - y
    m, s, n = float(d.mean()), float(d.std(ddof=1)), d.size
    if s == 0.0:
        return {"diff": m, "t": math.copysign(math.inf, m) if m else 0.0, "df": n - 1,
                "p": 0.0 if m else 1.0}  # fmt: skip
    t = m / (s / math.sqrt(n))
    return {"diff": m, "t": t, "df": float(n - 1), "p": 2.0 * t_cdf(-abs(t), n - 1)}


def welch_t_test(a: npt.ArrayLike, b: npt.ArrayLike) -> dict[str, float]:
    """Two-sided Welch t test of ``mean(a) = mean(b)``: ``{diff, t, df, p}``."""
    x, y = _finite(a, "a"), _finite(b, "b")
    if x.size < 2 or y.size < 2:
        raise ValueError("welch_t_test: expected >= 2 values per sample")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    m = float(x.mean() - y.mean())
    if va + vb == 0.0:
        return {"diff": m, "t": math.copysign(math.inf, m) if m else 0.0, "df": math.nan,
                "p": 0.0 if m else 1.0}  # fmt: skip
    t = m / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return {"diff": m, "t": t, "df": float(df), "p": 2.0 * t_cdf(-abs(t), df)}


def block_bootstrap_p(
    d: npt.ArrayLike, *, block: int = 24, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Circular block bootstrap of ``H0: mean(d) = 0`` (module docstring): ``{mean, p}``."""
    x = _finite(d, "d")
    n = x.size
    if n < 2 or block < 1:
        raise ValueError(f"block_bootstrap_p: {n} values, block {block}; expected >= 2, >= 1")
    m = float(x.mean())
    c = x - m
    rng = np.random.default_rng(seed)
    k = math.ceil(n / block)
    starts = rng.integers(0, n, size=(n_resamples, k))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_resamples, -1)[:, :n]
    means = c[idx % n].mean(axis=1)
    p = (1 + int((np.abs(means) >= abs(m) - 1e-15).sum())) / (n_resamples + 1)
    return {"mean": m, "p": p, "block": float(block), "n_resamples": float(n_resamples)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def steps_to_reach(
    timesteps: npt.ArrayLike, values: npt.ArrayLike, level: float, window: int = 5
) -> float | None:
    """First timestep where the trailing mean of the last ``window`` finite ``values``
    reaches ``level`` (None: never)."""
    t = np.asarray(timesteps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    seen: list[float] = []
    for ti, vi in zip(t, v, strict=True):
        if not math.isfinite(vi):
            continue
        seen.append(float(vi))
        if float(np.mean(seen[-window:])) >= level:
            return float(ti)
    return None


def trailing_mean(values: npt.ArrayLike, window: int = 5) -> float | None:
    """Mean of the last ``window`` finite values (None when there are none)."""
    v = [float(x) for x in np.asarray(values, dtype=np.float64) if math.isfinite(x)]
    return float(np.mean(v[-window:])) if v else None


def verdict(name: str, baseline: str, test: dict[str, Any], alpha: float) -> str:
    """One plain sentence for an arm against a baseline from its (adjusted) p-values."""
    p, pb = test["p_adjusted"], test.get("bootstrap_p_adjusted")
    sig = p < alpha and (pb is None or pb < alpha)
    how = (f"mean Sharpe difference {test['diff']:+.3f} (paired t p = {test['p']:.3g}, Holm "
           f"{p:.3g}" + (f"; bar bootstrap Holm {pb:.3g}" if pb is not None else "") + ")")  # fmt: skip
    if not sig:
        return f"{name} vs {baseline}: no significant difference at {alpha:g}: {how}"
    word = "better" if test["diff"] > 0 else "worse"
    return f"{name} is significantly {word} than {baseline} at {alpha:g}: {how}"
