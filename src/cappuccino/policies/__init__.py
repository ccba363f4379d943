"""Policies: one :class:`Policy` protocol for backtest and live trading.

A policy decides target units from a small :class:`MarketView` (the decision bar, the
portfolio at its close, the fill price); it never sees an env object. Implementations:
benchmarks (cash, buy-and-hold, equal weight, single asset), a trained network, an
ensemble of networks, and a classifier's signals.
"""

from cappuccino.policies.base import MarketView, Policy
from cappuccino.policies.benchmarks import CashPolicy, RebalancePolicy, benchmark_policy
from cappuccino.policies.multiagent import MultiAgentPolicy
from cappuccino.policies.network import EnsemblePolicy, NetPolicy
from cappuccino.policies.signals import SignalPolicy

__all__ = [
    "CashPolicy",
    "EnsemblePolicy",
    "MarketView",
    "MultiAgentPolicy",
    "NetPolicy",
    "Policy",
    "RebalancePolicy",
    "SignalPolicy",
    "benchmark_policy",
]
