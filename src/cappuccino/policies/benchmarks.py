"""Benchmark policies: cash, buy-and-hold, equal weight rebalanced every ``k`` bars, one asset.

- ``cash``: never trades.
- ``buy_and_hold``: equal weights bought at the first fill, then held.
- ``equal_weight:k``: equal weights, rebalanced every ``k`` bars (``equal_weight`` = every bar).
- ``single:SYMBOL``: all in one asset at the first fill, then held.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cappuccino.data.schema import normalize_symbol
from cappuccino.datasets.market import MarketArrays
from cappuccino.policies.base import MarketView, Policy


@dataclass
class CashPolicy:
    """Never trades."""

    name: str = "cash"
    lookback: int = 1

    def bind(self, data: MarketArrays) -> None:
        return None

    def decide(self, view: MarketView) -> Tensor:
        return torch.zeros_like(view.portfolio.units)


@dataclass
class RebalancePolicy:
    """Hold ``weights``; rebalance to them on step 0 and every ``every`` steps (0: never again)."""

    name: str
    weights: list[float]
    every: int = 0
    lookback: int = 1

    def bind(self, data: MarketArrays) -> None:
        if len(self.weights) != data.n_assets:
            raise ValueError(
                f"policy {self.name}: {len(self.weights)} weights, the market has "
                f"{data.n_assets} assets"
            )

    def decide(self, view: MarketView) -> Tensor:
        step = view.step
        if step == 0 or (self.every > 0 and step % self.every == 0):
            w = torch.tensor([self.weights], dtype=torch.float64, device=view.t.device)
            return view.weights_to_units(w.expand(view.t.shape[0], -1))
        return view.portfolio.units


def benchmark_policy(spec: str, symbols: tuple[str, ...]) -> Policy:
    """Parse ``cash``, ``buy_and_hold``, ``equal_weight[:k]`` or ``single:SYMBOL``."""
    n = len(symbols)
    kind, _, arg = spec.partition(":")
    if kind == "cash" and not arg:
        return CashPolicy()
    if kind == "buy_and_hold" and not arg:
        return RebalancePolicy("buy_and_hold", [1.0 / n] * n, 0)
    if kind == "equal_weight":
        try:
            k = int(arg) if arg else 1
        except ValueError:
            k = 0
        if k < 1:
            raise ValueError(f"policy {spec!r}: expected equal_weight:K with an integer K >= 1")
        return RebalancePolicy(f"equal_weight:{k}", [1.0 / n] * n, k)
    if kind == "single":
        sym = normalize_symbol(arg) if arg else ""
        if sym not in symbols:
            raise ValueError(f"policy {spec!r}: symbol {arg!r} not in {list(symbols)}")
        w = [0.0] * n
        w[symbols.index(sym)] = 1.0
        return RebalancePolicy(f"single:{sym}", w, 0)
    raise ValueError(
        f"policy: got {spec!r}, expected a bundle directory, cash, buy_and_hold, "
        "equal_weight[:k] or single:SYMBOL"
    )
