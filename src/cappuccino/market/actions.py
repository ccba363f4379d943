"""Action decoding: a policy's action ``(E, A)`` in ``[-1, 1]`` -> target units ``(E, A)``.

Two modes (``ActionMode``), the same for training, backtest and live:

- ``target_weights``: ``x = (a + 1) / 2``; if ``sum(x) <= 1`` the asset weights are ``x``
  and cash gets the rest, else ``x / sum(x)`` (fully invested). ``a = -1`` everywhere
  is all cash; ``a_i = 2 / n - 1`` is equal weight.
- ``trade`` (seed-compatible amounts): asset ``i`` is bought (``a_i > 0``) or sold
  (``a_i < 0``) for ``|a_i| * trade_fraction * equity`` of notional; sells are capped
  at the position by :func:`~cappuccino.market.rebalance` (long-only).

Equity and units are valued at the fill price (the next bar's open).

Multi-agent decoding (:func:`decode_scores`): the symbol agents' scores ``(E, A)`` in
``[-1, 1]`` are a ``target_weights`` action; a portfolio master's action ``(E, 1 + A)`` in
``[-1, 1]`` becomes per-portfolio limits (:func:`master_limits`): a gross-exposure
multiplier ``m = (a_0 + 1) / 2`` of ``max_gross_exposure`` and per-asset caps
``(a_i + 1) / 2 * max_weight``, enforced by the market's own
:func:`~cappuccino.market.apply_risk_limits` (the targets above a cap are cut to it, then
all are scaled down together until their sum fits the gross limit).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from cappuccino.market.portfolio import apply_risk_limits, weights_to_units
from cappuccino.market.rules import MarketRules

ActionMode = Literal["target_weights", "trade"]
ACTION_MODES: tuple[str, ...] = get_args(ActionMode)


def action_weights(action: Tensor) -> Tensor:
    """``target_weights`` mode: asset weights ``(E, A)`` (sum <= 1) of actions in [-1, 1]."""
    x = (action.to(dtype=torch.float64).clamp(-1.0, 1.0) + 1.0) * 0.5
    s = x.sum(dim=1, keepdim=True)
    return torch.where(s > 1.0, x / s.clamp_min(1e-12), x)


def decode_actions(
    action: Tensor,
    *,
    mode: str,
    cash: Tensor,
    units: Tensor,
    price: Tensor,
    trade_fraction: float,
) -> Tensor:
    """Target units ``(E, A)`` float64 for actions ``(E, A)``; ``cash`` ``(E,)``, ``units``
    and fill ``price`` ``(E, A)``; ``trade_fraction`` is the ``trade`` mode's order size at
    ``|a| = 1`` as a fraction of equity."""
    eq = cash + (units * price).sum(-1)
    if mode == "target_weights":
        return weights_to_units(action_weights(action), eq, price)
    if mode == "trade":
        a = action.to(dtype=torch.float64).clamp(-1.0, 1.0)
        return units + a * trade_fraction * eq.unsqueeze(1) / price
    raise ValueError(f"action mode: got {mode!r}, expected one of {list(ACTION_MODES)}")


def master_limits(master_action: Tensor, rules: MarketRules) -> tuple[Tensor, Tensor]:
    """A portfolio master's action ``(E, 1 + A)`` in [-1, 1] -> the gross-exposure limit
    ``(E,)`` (the multiplier ``(a_0 + 1) / 2`` times ``rules.max_gross_exposure``) and the
    per-asset caps ``(E, A)`` (``(a_i + 1) / 2 * rules.max_weight``), fractions of equity."""
    x = (master_action.to(dtype=torch.float64).clamp(-1.0, 1.0) + 1.0) * 0.5
    return x[:, 0] * rules.max_gross_exposure, x[:, 1:] * rules.max_weight


def decode_scores(
    scores: Tensor,
    *,
    cash: Tensor,
    units: Tensor,
    price: Tensor,
    rules: MarketRules,
    master: Tensor | None = None,
) -> Tensor:
    """Target units ``(E, A)`` float64 of the symbol agents' ``scores`` ``(E, A)`` (a
    ``target_weights`` action) under the master's limits (``master`` ``(E, 1 + A)``, see
    :func:`master_limits`; None: the master fixed at multiplier 1 and no caps, and the
    targets are exactly those of :func:`decode_actions`)."""
    target = decode_actions(
        scores, mode="target_weights", cash=cash, units=units, price=price, trade_fraction=1.0
    )
    if master is None:
        return target
    gross, caps = master_limits(master, rules)
    equity = cash + (units * price).sum(-1)
    return apply_risk_limits(target, price, equity, rules, max_weight=caps, max_gross=gross)
