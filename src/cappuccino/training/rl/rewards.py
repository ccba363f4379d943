"""Reward functions: pure, batched, unit-consistent.

Each takes the step's portfolio log return ``ln(equity_{t+1} / equity_t)`` ``(E,)``
(equity at bar closes, after the fills at bar t+1's open), the equal-weight benchmark's
log return over the same bar ``(E,)`` and a reward state ``(E, 2)`` (zeros after reset),
and returns ``(reward, new_state)``. Rewards are dimensionless per-bar quantities; the
env multiplies them by ``reward_scale``. Nothing is added at the end of an episode, so
summing rewards never counts a bar twice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RewardFn = Callable[[Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor]]


def log_return(
    log_ret: Tensor, bench_log_ret: Tensor, state: Tensor, eta: float
) -> tuple[Tensor, Tensor]:
    """Per-bar log return of equity: summed over an episode it is ln(final / initial equity)."""
    return log_ret, state


def excess_log_return(
    log_ret: Tensor, bench_log_ret: Tensor, state: Tensor, eta: float
) -> tuple[Tensor, Tensor]:
    """Log return minus the equal-weight (rebalanced every bar, frictionless) benchmark's."""
    return log_ret - bench_log_ret, state


def differential_sharpe(
    log_ret: Tensor, bench_log_ret: Tensor, state: Tensor, eta: float
) -> tuple[Tensor, Tensor]:
    """Moody & Saffell (1998) differential Sharpe ratio of simple returns ``R = e^{log_ret} - 1``.

    With exponential moving moments ``A`` (mean) and ``B`` (second moment), state
    ``[A, B]``: ``D_t = (B dA - A dB / 2) / (B - A^2)^{3/2}`` with ``dA = R - A``,
    ``dB = R^2 - B`` (previous ``A, B``); then ``A += eta dA``, ``B += eta dB``.
    ``D_t = 0`` while the variance estimate ``B - A^2`` is ``<= 1e-12`` (e.g. the first bar).
    """
    r = torch.expm1(log_ret)
    a, b = state[:, 0], state[:, 1]
    da, db = r - a, r * r - b
    var = b - a * a
    d = torch.where(
        var > 1e-12, (b * da - 0.5 * a * db) / var.clamp_min(1e-12).pow(1.5), torch.zeros_like(r)
    )
    new_state = torch.stack((a + eta * da, b + eta * db), dim=1)
    return d, new_state


REWARDS: dict[str, RewardFn] = {
    "log_return": log_return,
    "excess_log_return": excess_log_return,
    "differential_sharpe": differential_sharpe,
}


def get_reward(name: str) -> RewardFn:
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"reward: got {name!r}, expected one of {sorted(REWARDS)}") from None


MASTER_TERMS: tuple[str, ...] = ("sharpe", "log_return", "drawdown", "diversification")
"""The terms of the portfolio master's composite reward, in the column order of
:func:`master_reward_terms`."""


def log_drawdown(equity: Tensor, peak: Tensor) -> Tensor:
    """``ln(peak / equity)`` ``(E,)``: the log drawdown from the peak, ``>= 0``."""
    return torch.log(peak / equity).clamp_min(0.0)


def diversification(weights: Tensor) -> Tensor:
    """``g (1 - sum_i (w_i / g)^2)`` ``(E,)`` of position weights ``(E, A)`` with invested
    share ``g = sum_i w_i``: 0 all in cash or in one asset, ``g (1 - 1 / n)`` spread
    equally over ``n`` assets."""
    w = weights.clamp_min(0.0)
    g = w.sum(-1)
    share = w / g.clamp_min(1e-300).unsqueeze(-1)
    return torch.where(g > 0, g * (1.0 - (share * share).sum(-1)), torch.zeros_like(g))


def master_reward_terms(
    log_ret: Tensor,
    dsr: Tensor,
    drawdown_before: Tensor,
    drawdown_after: Tensor,
    weights: Tensor,
    reward_scale: float,
    sharpe_clip: float = 3.0,
) -> Tensor:
    """``(E, 4)`` float64 terms of the master's reward, columns :data:`MASTER_TERMS`:

    - ``sharpe``: the bar's differential Sharpe ratio ``dsr`` (:func:`differential_sharpe`)
      clipped to ``+-sharpe_clip`` (its moving moments start at 0 each episode, and a
      large move against a still-small variance estimate gives values in the hundreds);
    - ``log_return``: ``reward_scale * log_ret``;
    - ``drawdown``: ``-reward_scale * (drawdown_after - drawdown_before)``, log drawdowns
      from the episode's peak equity (:func:`log_drawdown`): summed over an episode it is
      minus its final log drawdown, so a recovered loss is not penalised twice;
    - ``diversification``: :func:`diversification` of the weights after the bar.

    The composite reward is their weighted sum (``MasterRewardSettings``); the terms are
    logged separately.
    """
    f64 = torch.float64
    return torch.stack(
        [
            dsr.to(f64).clamp(-sharpe_clip, sharpe_clip),
            reward_scale * log_ret.to(f64),
            -reward_scale * (drawdown_after - drawdown_before).to(f64),
            diversification(weights.to(f64)),
        ],
        dim=1,
    )
