"""Market runtime (leaf): rules, batched portfolio accounting and fills, action decoding, the
observation layout and the bar simulator.

The RL env, the backtester and the paper broker all trade through :class:`BarSimulator`
and :func:`rebalance`; nothing else implements a market rule.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cappuccino.market.actions import (
        ACTION_MODES,
        ActionMode,
        action_weights,
        decode_actions,
        decode_scores,
        master_limits,
    )
    from cappuccino.market.observation import ObservationSpec
    from cappuccino.market.portfolio import (
        Fill,
        Portfolio,
        apply_risk_limits,
        execute,
        plan_orders,
        rebalance,
        stop_loss_mask,
        weights_to_units,
    )
    from cappuccino.market.rules import MarketRules
    from cappuccino.market.simulator import BarSimulator, Segments

# name -> module: loaded on first use, so that `cappuccino.market.timeframe` (which the data
# layer and every config import) does not import torch with the package
_EXPORTS = {
    "ACTION_MODES": "actions",
    "ActionMode": "actions",
    "action_weights": "actions",
    "decode_actions": "actions",
    "decode_scores": "actions",
    "master_limits": "actions",
    "ObservationSpec": "observation",
    "Fill": "portfolio",
    "Portfolio": "portfolio",
    "apply_risk_limits": "portfolio",
    "execute": "portfolio",
    "plan_orders": "portfolio",
    "rebalance": "portfolio",
    "stop_loss_mask": "portfolio",
    "weights_to_units": "portfolio",
    "MarketRules": "rules",
    "BarSimulator": "simulator",
    "Segments": "simulator",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cappuccino.market' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cappuccino.market.{module}"), name)
    globals()[name] = value
    return value


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
    "decode_scores",
    "execute",
    "master_limits",
    "plan_orders",
    "rebalance",
    "stop_loss_mask",
    "weights_to_units",
]
