"""Batched long-only spot portfolios: the one implementation of fills, fees and risk limits.

Shapes: ``E`` portfolios (environments) by ``A`` assets. Cash is ``(E,)``, units and
prices ``(E, A)``; all in the quote currency. Every function is pure tensor code (no
host syncs, no Python loops over portfolios or assets), so it runs unchanged on CPU or
GPU and inside a batched RL step.

Order of operations in :func:`rebalance` (at one fill price per asset, e.g. the next
bar's open):

1. Targets are made long-only (``>= 0``); positions hit by the stop-loss get target 0.
2. Risk limits cap each target's value at ``max_weight * equity`` and scale all targets
   down together so that their sum is at most ``max_gross_exposure * equity``
   (equity valued at the fill price before trading).
3. Orders are the differences; an order whose notional is below the asset's minimum
   is not placed.
4. Sells execute first, at ``price * (1 - slippage)``, paying ``sell_fee_rate`` of the
   proceeds.
5. Buys execute at ``price * (1 + slippage)`` plus ``buy_fee_rate`` of the notional. If
   their total cost exceeds the cash, every buy is scaled by the same factor (pro rata:
   no asset has priority); a buy that falls below its minimum after scaling is dropped.
   Cash never goes negative and nothing is borrowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cappuccino.market.rules import MarketRules


@dataclass(frozen=True)
class Portfolio:
    """State of ``E`` portfolios.

    Attributes:
        cash: ``(E,)`` quote currency, never negative.
        units: ``(E, A)`` asset units held, never negative.
        entry_price: ``(E, A)`` average buy fill price of the open position (0 when flat);
            used by the stop-loss.
    """

    cash: Tensor
    units: Tensor
    entry_price: Tensor

    @classmethod
    def new(
        cls,
        n_envs: int,
        n_assets: int,
        rules: MarketRules,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> Portfolio:
        """All cash: ``rules.initial_cash`` in every portfolio."""
        return cls(
            cash=torch.full((n_envs,), rules.initial_cash, device=device, dtype=dtype),
            units=torch.zeros((n_envs, n_assets), device=device, dtype=dtype),
            entry_price=torch.zeros((n_envs, n_assets), device=device, dtype=dtype),
        )

    def equity(self, price: Tensor) -> Tensor:
        """``(E,)`` cash plus positions valued at ``price`` ``(E, A)`` or ``(A,)``."""
        return self.cash + (self.units * price).sum(-1)

    def weights(self, price: Tensor) -> Tensor:
        """``(E, A)`` position values as fractions of equity at ``price``."""
        return self.units * price / self.equity(price).unsqueeze(-1)

    def where(self, mask: Tensor, other: Portfolio) -> Portfolio:
        """Rows of ``other`` where ``mask`` ``(E,)`` is true, else rows of ``self``."""
        m = mask.unsqueeze(-1)
        return Portfolio(
            cash=torch.where(mask, other.cash, self.cash),
            units=torch.where(m, other.units, self.units),
            entry_price=torch.where(m, other.entry_price, self.entry_price),
        )


@dataclass(frozen=True)
class Fill:
    """Result of one :func:`rebalance`: the new state and what was traded.

    Attributes:
        portfolio: state after the fills.
        bought: ``(E, A)`` units bought.
        sold: ``(E, A)`` units sold (an asset is either bought or sold in one fill, never both).
        price: ``(E, A)`` execution price: the reference price moved by slippage against the
            trader on the side that traded (the reference price where nothing traded).
        asset_fees: ``(E, A)`` fees paid per asset, quote currency.
        traded_notional: ``(E,)`` sum of buy and sell notionals at fill prices, quote currency.
        fees: ``(E,)`` fees paid, quote currency.
        stopped: ``(E, A)`` positions closed by the stop-loss rule.
    """

    portfolio: Portfolio
    bought: Tensor
    sold: Tensor
    price: Tensor
    asset_fees: Tensor
    traded_notional: Tensor
    fees: Tensor
    stopped: Tensor


def weights_to_units(target_weights: Tensor, equity: Tensor, price: Tensor) -> Tensor:
    """Units worth ``target_weights * equity`` at ``price``. Shapes ``(E, A), (E,), (E, A)``."""
    return target_weights * equity.unsqueeze(-1) / price


def stop_loss_mask(portfolio: Portfolio, price: Tensor, rules: MarketRules) -> Tensor:
    """``(E, A)`` true where a held position's price is at or below entry * (1 - stop_loss)."""
    if rules.stop_loss_rate is None:
        return torch.zeros_like(portfolio.units, dtype=torch.bool)
    held = portfolio.units > 0
    return held & (price <= portfolio.entry_price * (1.0 - rules.stop_loss_rate))


def apply_risk_limits(
    target_units: Tensor,
    price: Tensor,
    equity: Tensor,
    rules: MarketRules,
    *,
    max_weight: Tensor | None = None,
    max_gross: Tensor | None = None,
) -> Tensor:
    """Cap each target at ``max_weight`` of equity and the sum at ``max_gross_exposure``.

    ``target_units`` ``(E, A)`` must already be ``>= 0``. The gross cap scales every
    target by the same factor, so relative sizes are kept. ``max_weight`` ``(E, A)`` and
    ``max_gross`` ``(E,)`` (fractions of equity, e.g. a portfolio master's caps) tighten
    the rules' limits per portfolio and asset: the limit applied is the smaller of the two.
    """
    eq = equity.unsqueeze(-1)
    w_cap = rules.max_weight if max_weight is None else max_weight.clamp(max=rules.max_weight)
    value = torch.minimum(target_units * price, w_cap * eq)
    gross = value.sum(-1, keepdim=True)
    g_cap = (
        rules.max_gross_exposure
        if max_gross is None
        else max_gross.clamp(max=rules.max_gross_exposure).unsqueeze(-1)
    )
    cap = g_cap * eq
    scale = torch.where(gross > cap, cap / gross.clamp_min(1e-300), torch.ones_like(gross))
    return value * scale / price


def plan_orders(
    portfolio: Portfolio,
    target_units: Tensor,
    price: Tensor,
    rules: MarketRules,
    min_notional: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 1-3 and the sizing of step 5 (see the module docstring): the units to sell and
    to buy ``(E, A)`` for ``target_units`` at ``price``, and the stop-loss mask. Nothing is
    executed; :func:`execute` fills exactly these quantities. The paper runner sends them
    to a broker as orders."""
    units, cash = portfolio.units, portfolio.cash
    price = price.expand_as(units)
    stopped = stop_loss_mask(portfolio, price, rules)
    target = torch.where(stopped, torch.zeros_like(target_units), target_units.clamp_min(0.0))
    equity = portfolio.equity(price)
    target = apply_risk_limits(target, price, equity, rules)

    delta = target - units
    sell = (-delta).clamp_min(0.0)
    sell = torch.where(sell * price < min_notional, torch.zeros_like(sell), sell)
    sell = torch.minimum(sell, units)
    cash = cash + _sell_cash(sell, price, rules).sum(-1)

    buy = delta.clamp_min(0.0)
    buy = torch.where(buy * price < min_notional, torch.zeros_like(buy), buy)
    unit_cost = price * (1.0 + rules.slippage_rate) * (1.0 + rules.buy_fee_rate)
    total = (buy * unit_cost).sum(-1)
    scale = torch.where(total > cash, cash / total.clamp_min(1e-300), torch.ones_like(total))
    buy = buy * scale.unsqueeze(-1)
    buy = torch.where(buy * price < min_notional, torch.zeros_like(buy), buy)
    return sell, buy, stopped


def _sell_cash(sell: Tensor, price: Tensor, rules: MarketRules) -> Tensor:
    """``(E, A)`` cash received per asset for selling ``sell`` at ``price``: proceeds at the
    slipped price less the sell fee."""
    proceeds = sell * (price * (1.0 - rules.slippage_rate))
    return proceeds - proceeds * rules.sell_fee_rate


def execute(
    portfolio: Portfolio,
    sell: Tensor,
    buy: Tensor,
    price: Tensor,
    rules: MarketRules,
    stopped: Tensor | None = None,
) -> Fill:
    """Fill ``sell`` and ``buy`` units ``(E, A)`` at ``price`` (steps 4-5 of the module
    docstring: sells first, then buys, slippage and fees; cash clamped at 0 against rounding).
    The quantities are taken as given: :func:`plan_orders` sizes them."""
    units, cash = portfolio.units, portfolio.cash
    price = price.expand_as(units)
    sell_px = price * (1.0 - rules.slippage_rate)
    proceeds = sell * sell_px
    sell_fees = proceeds * rules.sell_fee_rate
    cash = cash + (proceeds - sell_fees).sum(-1)
    units = units - sell

    buy_px = price * (1.0 + rules.slippage_rate)
    notional_bought = buy * buy_px
    buy_fees = notional_bought * rules.buy_fee_rate
    cash = (cash - (notional_bought + buy_fees).sum(-1)).clamp_min(0.0)
    new_units = units + buy
    entry = torch.where(
        new_units > 0,
        (units * portfolio.entry_price + notional_bought) / new_units.clamp_min(1e-300),
        torch.zeros_like(new_units),
    )
    stop = torch.zeros_like(sell, dtype=torch.bool) if stopped is None else stopped
    return Fill(
        portfolio=Portfolio(cash=cash, units=new_units, entry_price=entry),
        bought=buy,
        sold=sell,
        price=torch.where(buy > 0, buy_px, torch.where(sell > 0, sell_px, price)),
        asset_fees=sell_fees + buy_fees,
        traded_notional=(proceeds + notional_bought).sum(-1),
        fees=(sell_fees + buy_fees).sum(-1),
        stopped=stop & (sell > 0),
    )


def rebalance(
    portfolio: Portfolio,
    target_units: Tensor,
    price: Tensor,
    rules: MarketRules,
    min_notional: Tensor,
) -> Fill:
    """Trade every portfolio towards ``target_units`` at ``price``; see the module docstring.
    :func:`plan_orders` then :func:`execute`.

    Args:
        portfolio: current state, ``E`` portfolios of ``A`` assets.
        target_units: ``(E, A)`` desired units (negative values mean 0: long-only).
        price: ``(E, A)`` or ``(A,)`` fill reference price (e.g. next bar's open), > 0.
        rules: fees, slippage and risk limits.
        min_notional: ``(A,)`` minimum order notional per asset, quote currency.
    """
    sell, buy, stopped = plan_orders(portfolio, target_units, price, rules, min_notional)
    return execute(portfolio, sell, buy, price, rules, stopped)
