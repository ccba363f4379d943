"""Binary classification losses on **logits** (numerically stable; probabilities only at the edge).

- ``bce``: mean of ``-(y log p + (1 - y) log(1 - p))``.
- ``weighted_bce``: the same with weight ``w_pos = n / n_pos`` on positives and
  ``w_neg = n / n_neg`` on negatives (``n``, ``n_pos``, ``n_neg`` counted on the training
  split), so both classes carry equal total weight.
- ``focal`` (Lin et al. 2017, as in seed 004): mean of
  ``-alpha (1 - p)^gamma y log p - (1 - alpha) p^gamma (1 - y) log(1 - p)``.

``log p = -softplus(-z)`` and ``log(1 - p) = -softplus(z)`` keep every term finite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def bce(logits: Tensor, y: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, y)


def class_weights(n_pos: int, n_neg: int) -> tuple[float, float]:
    """``(w_pos, w_neg) = (n / n_pos, n / n_neg)``; both classes must be present."""
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"class weights need both classes, got {n_pos} positive, {n_neg} negative")
    n = n_pos + n_neg
    return n / n_pos, n / n_neg


def weighted_bce(w_pos: float, w_neg: float) -> LossFn:
    def loss(logits: Tensor, y: Tensor) -> Tensor:
        w = y * w_pos + (1.0 - y) * w_neg
        return F.binary_cross_entropy_with_logits(logits, y, weight=w)

    return loss


def focal(alpha: float = 0.25, gamma: float = 2.0) -> LossFn:
    if not 0.0 <= alpha <= 1.0 or gamma < 0.0:
        raise ValueError(f"focal: got alpha={alpha}, gamma={gamma}; expected 0<=alpha<=1, gamma>=0")

    def loss(logits: Tensor, y: Tensor) -> Tensor:
        log_p = -F.softplus(-logits)
        log_q = -F.softplus(logits)  # log(1 - p)
        p, q = log_p.exp(), log_q.exp()
        pos = -alpha * q.pow(gamma) * y * log_p
        neg = -(1.0 - alpha) * p.pow(gamma) * (1.0 - y) * log_q
        return (pos + neg).mean()

    return loss


__all__ = ["LossFn", "bce", "class_weights", "focal", "weighted_bce"]
