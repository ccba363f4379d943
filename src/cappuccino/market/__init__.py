"""Market core (leaf): batched portfolio accounting, fills, fees, minimum orders, risk limits.

The RL environment, the backtester and the paper broker all trade through
:func:`rebalance`; nothing else implements a market rule.
"""

from cappuccino.market.portfolio import (
    Fill,
    Portfolio,
    apply_risk_limits,
    rebalance,
    stop_loss_mask,
    weights_to_units,
)
from cappuccino.market.rules import MarketRules

__all__ = [
    "Fill",
    "MarketRules",
    "Portfolio",
    "apply_risk_limits",
    "rebalance",
    "stop_loss_mask",
    "weights_to_units",
]
