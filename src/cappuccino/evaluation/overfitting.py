"""How much of a backtest is luck: the probability of backtest overfitting and the deflated
Sharpe ratio (leaf, numpy; the normal distribution from :mod:`statistics`).

Conventions: Sharpe ratios here are **per period** (mean / std with ddof 1 of per-bar
simple returns, not annualised) because the formulas are stated per observation;
annualise with ``sqrt(periods_per_year)`` for display only. Kurtosis is the plain
(non-excess) fourth standardised moment: 3 for a normal distribution.

- **PSR** (Bailey & López de Prado 2012): probability that the true Sharpe exceeds
  ``sr_benchmark`` given the estimate's length, skewness and kurtosis.
- **DSR** (Bailey & López de Prado 2014): the PSR against the Sharpe the best of
  ``n_trials`` skill-less trials is expected to reach, ``E[max SR]`` from the variance of
  the trials' Sharpe ratios.
- **PBO** by combinatorially symmetric cross-validation (Bailey, Borwein, López de Prado
  & Zhu 2017): split the bars into ``S`` blocks; for every half of them, pick the trial
  that did best in-sample and find its relative rank out of sample. PBO is the share of
  splits where the in-sample winner ranks in the bottom half out of sample (logit <= 0).
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()
Array = npt.NDArray[np.float64]


def per_period_sharpe(returns: npt.ArrayLike, axis: int = 0) -> Array:
    """mean / std (ddof 1) along ``axis``; 0 where the std is 0."""
    r = np.asarray(returns, dtype=np.float64)
    sd = r.std(axis=axis, ddof=1)
    mean = r.mean(axis=axis)
    return np.asarray(np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 1e-15))


def moments(returns: npt.ArrayLike) -> tuple[float, float]:
    """(skewness, kurtosis) of a return series: population moments, kurtosis not excess."""
    r = np.asarray(returns, dtype=np.float64)
    c = r - r.mean()
    m2 = float(np.mean(c**2))
    if m2 <= 0:
        return 0.0, 3.0
    return float(np.mean(c**3) / m2**1.5), float(np.mean(c**4) / m2**2)


def probabilistic_sharpe(
    sr: float, n_obs: int, *, skew: float = 0.0, kurtosis: float = 3.0, sr_benchmark: float = 0.0
) -> float:
    """``Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2))``."""
    if n_obs < 2:
        raise ValueError(f"n_obs: got {n_obs}, expected at least 2 observations")
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if var <= 0:
        raise ValueError(
            f"PSR: the Sharpe estimate's variance term is {var:.4g} <= 0 "
            f"(SR {sr:.4g}, skew {skew:.4g}, kurtosis {kurtosis:.4g})"
        )
    return _N.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(var))


def expected_max_sharpe(n_trials: int, var_sr: float, mean_sr: float = 0.0) -> float:
    """Expected maximum of ``n_trials`` Sharpe estimates drawn from a normal with mean
    ``mean_sr`` and variance ``var_sr`` (the false-strategy theorem's approximation);
    ``mean_sr`` for a single trial."""
    if n_trials < 1:
        raise ValueError(f"n_trials: got {n_trials}, expected >= 1")
    if var_sr < 0:
        raise ValueError(f"var_sr: got {var_sr}, expected >= 0")
    if n_trials == 1:
        return mean_sr
    z = (1.0 - EULER_GAMMA) * _N.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * _N.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return mean_sr + math.sqrt(var_sr) * z


def deflated_sharpe(
    returns: npt.ArrayLike, *, n_trials: int, var_trial_sharpe: float
) -> dict[str, float]:
    """DSR of the selected strategy's per-bar ``returns`` after ``n_trials`` trials whose
    per-period Sharpe ratios had variance ``var_trial_sharpe``."""
    r = np.asarray(returns, dtype=np.float64)
    sr = float(per_period_sharpe(r))
    skew, kurt = moments(r)
    sr0 = expected_max_sharpe(n_trials, var_trial_sharpe)
    return {
        "sharpe": sr,
        "expected_max_sharpe": sr0,
        "deflated_sharpe": probabilistic_sharpe(
            sr, r.size, skew=skew, kurtosis=kurt, sr_benchmark=sr0
        ),
        "probabilistic_sharpe": probabilistic_sharpe(sr, r.size, skew=skew, kurtosis=kurt),
        "n_trials": float(n_trials),
        "var_trial_sharpe": float(var_trial_sharpe),
        "n_obs": float(r.size),
        "skew": skew,
        "kurtosis": kurt,
    }


def pbo_cscv(returns: npt.ArrayLike, n_blocks: int = 16) -> dict[str, Any]:
    """PBO of choosing the best of ``N`` trials by in-sample Sharpe.

    ``returns``: ``(T, N)`` per-bar returns of each trial over the same bars. The rows are
    cut into ``n_blocks`` (even) consecutive blocks (the remainder rows at the end are
    dropped); each of the ``C(S, S/2)`` halves is in-sample once, its complement out of
    sample. Returns ``pbo``, the ``logits``, the in- and out-of-sample Sharpe of each
    split's winner, ``prob_oos_loss`` (share of winners with a negative out-of-sample
    Sharpe) and ``degradation_slope`` (OLS slope of OOS on IS Sharpe).
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"returns: got shape {m.shape}, expected (bars, trials >= 2)")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks: got {n_blocks}, expected an even number >= 2")
    size = m.shape[0] // n_blocks
    if size < 2:
        raise ValueError(f"{m.shape[0]} bars cannot form {n_blocks} blocks of 2 bars or more")
    blocks = m[: size * n_blocks].reshape(n_blocks, size, m.shape[1])
    n = m.shape[1]
    logits, is_sr, oos_sr = [], [], []
    for combo in itertools.combinations(range(n_blocks), n_blocks // 2):
        mask = np.zeros(n_blocks, dtype=bool)
        mask[list(combo)] = True
        ins = per_period_sharpe(blocks[mask].reshape(-1, n))
        oos = per_period_sharpe(blocks[~mask].reshape(-1, n))
        best = int(np.argmax(ins))
        # relative rank of the winner out of sample: rank in 1..N (ties averaged) / (N + 1)
        rank = float((oos < oos[best]).sum()) + (float((oos == oos[best]).sum()) + 1) / 2
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
        is_sr.append(float(ins[best]))
        oos_sr.append(float(oos[best]))
    lg = np.array(logits)
    x, y = np.array(is_sr), np.array(oos_sr)
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else float("nan")
    return {
        "pbo": float(np.mean(lg <= 0)),
        "n_splits": int(lg.size),
        "n_blocks": n_blocks,
        "n_trials": n,
        "logits": lg.tolist(),
        "is_sharpe": is_sr,
        "oos_sharpe": oos_sr,
        "prob_oos_loss": float(np.mean(y < 0)),
        "degradation_slope": slope,
    }
