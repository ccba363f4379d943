"""Market runtime (leaf): rules, batched portfolio accounting and fills, action decoding, the
observation layout and the bar simulator.

The RL env, the backtester and the paper broker all trade through :class:`BarSimulator`
and :func:`rebalance`; nothing else implements a market rule.
"""

from cappuccino.market.actions import ACTION_MODES, ActionMode, action_weights, decode_actions
from cappuccino.market.observation import ObservationSpec
from cappuccino.market.portfolio import (
    Fill,
    Portfolio,
    apply_risk_limits,
    rebalance,
    stop_loss_mask,
    weights_to_units,
)
from cappuccino.market.rules import MarketRules
from cappuccino.market.simulator import BarSimulator, Segments

__all__ = [
    "ACTION_MODES",
    "ActionMode",
    "BarSimulator",
    "Fill",
    "MarketRules",
    "ObservationSpec",
    "Portfolio",
    "Segments",
    "action_weights",
    "apply_risk_limits",
    "decode_actions",
    "rebalance",
    "stop_loss_mask",
    "weights_to_units",
]
