"""The policy protocol and the market view a policy decides from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from cappuccino.datasets.market import MarketArrays
from cappuccino.market import Portfolio, weights_to_units


@dataclass(frozen=True)
class MarketView:
    """What a policy sees when it decides at the close of bar ``t`` (``E`` portfolios).

    Attributes:
        step: decisions made before this one in the run (0 at the first).
        t: ``(E,)`` decision bar, an index into the calendar the policy was bound to.
        portfolio: state at ``close[t]``.
        equity: ``(E,)`` equity at ``close[t]``, quote currency.
        close: ``(E, A)`` close of bar ``t``.
        fill_price: ``(E, A)`` price the decision fills at (the open of bar ``t + 1``).
    """

    step: int
    t: Tensor
    portfolio: Portfolio
    equity: Tensor
    close: Tensor
    fill_price: Tensor

    def row(self, i: int) -> MarketView:
        """The view of portfolio ``i`` alone (a batch of one)."""
        s = slice(i, i + 1)
        pf = self.portfolio
        return MarketView(
            step=self.step,
            t=self.t[s],
            portfolio=Portfolio(cash=pf.cash[s], units=pf.units[s], entry_price=pf.entry_price[s]),
            equity=self.equity[s],
            close=self.close[s],
            fill_price=self.fill_price[s],
        )

    def weights_to_units(self, weights: Tensor) -> Tensor:
        """Target units ``(E, A)`` for asset weights ``(E, A)`` (sum <= 1) at the fill price,
        equity valued at the fill price."""
        price = self.fill_price
        return weights_to_units(weights, self.portfolio.equity(price), price)


class Policy(Protocol):
    """Decides target units for the next fill.

    ``bind`` is called once per calendar before the first decision (a network policy
    scales its features there, a signal policy maps its signals onto the bars); ``lookback``
    is the number of bars up to and including the decision bar that it reads.
    """

    name: str

    @property
    def lookback(self) -> int: ...

    def bind(self, data: MarketArrays) -> None: ...

    def decide(self, view: MarketView) -> Tensor:
        """Target units ``(E, A)`` float64 for the fill at ``view.fill_price``."""
        ...
