"""Market rules as one frozen, validated value: fees, slippage, minimum order, risk limits.

Every percentage is a fraction (``0.001`` = 0.1 %). Notionals are in the quote
currency (USDT for the sample). The RL env, the backtester and the paper broker
read the same :class:`MarketRules`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _check_fraction(name: str, value: float, *, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"MarketRules.{name}: got {value!r}, expected a number in [{low}, {high}]")


@dataclass(frozen=True, kw_only=True)
class MarketRules:
    """Long-only spot trading rules for a batch of portfolios.

    Attributes:
        initial_cash: starting cash per portfolio, quote currency.
        buy_fee_pct: fee on the notional of each buy, fraction.
        sell_fee_pct: fee on the notional of each sell, fraction.
        slippage_pct: buys fill at ``price * (1 + slippage)``, sells at ``price * (1 - slippage)``.
        min_order_notional: smallest order accepted, quote currency; one value for every
            asset or one per asset (in symbol order). Smaller orders are not placed.
        max_weight: cap on one asset's share of equity after rebalancing, fraction.
        max_gross_exposure: cap on the invested share of equity (sum of weights), fraction <= 1
            (no leverage).
        stop_loss_pct: when set, a position whose price falls this fraction below its average
            entry price is sold at the next fill.
    """

    initial_cash: float = 1_000_000.0
    buy_fee_pct: float = 0.001
    sell_fee_pct: float = 0.001
    slippage_pct: float = 0.0
    min_order_notional: float | tuple[float, ...] = 10.0
    max_weight: float = 1.0
    max_gross_exposure: float = 1.0
    stop_loss_pct: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ValueError(
                f"MarketRules.initial_cash: got {self.initial_cash!r}, expected a positive number"
            )
        _check_fraction("buy_fee_pct", self.buy_fee_pct, low=0.0, high=0.5)
        _check_fraction("sell_fee_pct", self.sell_fee_pct, low=0.0, high=0.5)
        _check_fraction("slippage_pct", self.slippage_pct, low=0.0, high=0.5)
        _check_fraction("max_weight", self.max_weight, low=0.0, high=1.0)
        _check_fraction("max_gross_exposure", self.max_gross_exposure, low=0.0, high=1.0)
        if self.stop_loss_pct is not None:
            _check_fraction("stop_loss_pct", self.stop_loss_pct, low=1e-6, high=1.0)
        mins = (
            self.min_order_notional
            if isinstance(self.min_order_notional, tuple)
            else (self.min_order_notional,)
        )
        for m in mins:
            if not (math.isfinite(m) and m >= 0):
                raise ValueError(
                    f"MarketRules.min_order_notional: got {m!r}, expected a number >= 0"
                )

    def min_notional_per_asset(self, n_assets: int) -> list[float]:
        """Minimum order notional for each of ``n_assets`` assets, in symbol order."""
        m = self.min_order_notional
        if isinstance(m, tuple):
            if len(m) != n_assets:
                raise ValueError(
                    f"MarketRules.min_order_notional: got {len(m)} values, expected one per "
                    f"asset ({n_assets})"
                )
            return list(m)
        return [float(m)] * n_assets

    def to_dict(self) -> dict[str, Any]:
        return {
            "initial_cash": self.initial_cash,
            "buy_fee_pct": self.buy_fee_pct,
            "sell_fee_pct": self.sell_fee_pct,
            "slippage_pct": self.slippage_pct,
            "min_order_notional": (
                list(self.min_order_notional)
                if isinstance(self.min_order_notional, tuple)
                else self.min_order_notional
            ),
            "max_weight": self.max_weight,
            "max_gross_exposure": self.max_gross_exposure,
            "stop_loss_pct": self.stop_loss_pct,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarketRules:
        d = dict(data)
        m = d.get("min_order_notional")
        if isinstance(m, Sequence) and not isinstance(m, str):
            d["min_order_notional"] = tuple(float(x) for x in m)
        return cls(**d)
