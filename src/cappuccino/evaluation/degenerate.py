"""Degenerate-policy flag: is a policy just a benchmark in disguise?

A trained policy is flagged when, over the same bars,

- it is indistinguishable from **cash**: it is invested less than ``min_exposure`` of
  the time-averaged equity and its returns have (almost) no variance; or
- its per-bar simple returns correlate above ``max_correlation`` (default 0.98) with a
  benchmark's **and** its weights are near-constant (mean over assets of the standard
  deviation of each weight over time below ``max_weight_std``, default 0.02), i.e. it
  holds a fixed allocation that the benchmark already represents.

The verdict names the matching benchmark and the numbers behind it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def degenerate_verdict(
    returns: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    benchmarks: dict[str, npt.NDArray[np.float64]],
    *,
    max_correlation: float = 0.98,
    max_weight_std: float = 0.02,
    min_exposure: float = 0.01,
) -> dict[str, Any]:
    """Verdict for a policy's ``returns`` ``(n,)`` and ``weights`` ``(n, A)`` against
    benchmark return series (same bars)."""
    weight_std = float(weights.std(axis=0).mean()) if weights.size else 0.0
    exposure = float(weights.sum(axis=1).mean()) if weights.size else 0.0
    correlations: dict[str, float | None] = {}
    for name, r in benchmarks.items():
        if r.shape != returns.shape:
            raise ValueError(f"benchmark {name}: {r.shape} returns, policy has {returns.shape}")
        if r.std() < 1e-12 or returns.std() < 1e-12:
            correlations[name] = None
        else:
            correlations[name] = float(np.corrcoef(returns, r)[0, 1])
    out: dict[str, Any] = {
        "degenerate": False,
        "matches": None,
        "reason": "distinct from every benchmark",
        "weight_std": weight_std,
        "exposure": exposure,
        "correlations": correlations,
        "thresholds": {
            "max_correlation": max_correlation,
            "max_weight_std": max_weight_std,
            "min_exposure": min_exposure,
        },
    }
    if exposure < min_exposure and returns.std() < 1e-6:
        out.update(
            degenerate=True,
            matches="cash",
            reason=f"invested {exposure:.2%} on average: a cash policy",
        )
        return out
    near_constant = weight_std < max_weight_std
    best = max(
        ((n, c) for n, c in correlations.items() if c is not None),
        key=lambda kv: kv[1],
        default=None,
    )
    if best is not None and best[1] > max_correlation and near_constant:
        out.update(
            degenerate=True,
            matches=best[0],
            reason=(
                f"returns correlate {best[1]:.3f} with {best[0]} and weights are near-constant "
                f"(mean std {weight_std:.4f})"
            ),
        )
    elif best is not None and best[1] > max_correlation:
        out["reason"] = (
            f"returns correlate {best[1]:.3f} with {best[0]}, but weights vary (mean std "
            f"{weight_std:.4f}): similar, not identical"
        )
    return out
