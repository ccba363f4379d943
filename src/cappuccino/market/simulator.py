"""The bar simulator: ``E`` portfolios stepped over ``(T, A)`` open/close arrays.

One transition for training, backtest and paper trading:

- A decision at bar ``t`` (made at its close) fills at bar ``t + 1``'s **open** through
  :func:`~cappuccino.market.rebalance` (fees, slippage, minimum order, risk limits).
- The portfolio is then valued at ``close[t + 1]``.

:class:`Segments` draws episode starts inside contiguous bar ranges, so an episode never
crosses a segment boundary (a CPCV fold's train blocks, say). Everything is pure tensor
code: no Python loop over portfolios, no host sync, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from cappuccino.market.portfolio import Fill, Portfolio, rebalance
from cappuccino.market.rules import MarketRules


class BarSimulator:
    """Fills at the next open and values at the close, for any batch of portfolios.

    Args:
        open, close: ``(T, A)`` prices per bar, quote currency (converted to float64 on
            ``device``).
        rules: the market rules every fill obeys.
    """

    def __init__(
        self,
        open: Tensor | npt.NDArray[np.float64],
        close: Tensor | npt.NDArray[np.float64],
        *,
        rules: MarketRules,
        device: torch.device | str = "cpu",
    ) -> None:
        dev, f64 = torch.device(device), torch.float64
        self.open = torch.as_tensor(open, dtype=f64, device=dev)
        self.close = torch.as_tensor(close, dtype=f64, device=dev)
        if self.open.shape != self.close.shape or self.open.ndim != 2:
            raise ValueError(
                f"prices: open {tuple(self.open.shape)} and close {tuple(self.close.shape)}, "
                "expected two arrays of one shape (bars, assets)"
            )
        self.rules = rules
        self.device = dev
        self.n_bars, self.n_assets = self.open.shape
        self.min_notional = torch.tensor(
            rules.min_notional_per_asset(self.n_assets), dtype=f64, device=dev
        )

    def new_portfolios(self, n: int) -> Portfolio:
        """``n`` portfolios holding ``rules.initial_cash`` each."""
        return Portfolio.new(n, self.n_assets, self.rules, device=self.device)

    def fill_price(self, t: Tensor) -> Tensor:
        """``(E, A)`` price the orders decided at bars ``t`` fill at: ``open[t + 1]``."""
        return self.open[t + 1]

    def equity(self, portfolio: Portfolio, t: Tensor) -> Tensor:
        """``(E,)`` equity at ``close[t]``."""
        return portfolio.equity(self.close[t])

    def step(self, portfolio: Portfolio, target_units: Tensor, t: Tensor) -> tuple[Fill, Tensor]:
        """Trade ``portfolio`` towards ``target_units`` ``(E, A)`` at ``open[t + 1]``; returns
        the fill (its ``portfolio`` is the state after trading) and the equity ``(E,)`` at
        ``close[t + 1]``."""
        fill = rebalance(portfolio, target_units, self.open[t + 1], self.rules, self.min_notional)
        return fill, fill.portfolio.equity(self.close[t + 1])


@dataclass(frozen=True)
class Segments:
    """Where episodes may start: contiguous bar ranges ``[(start, stop), ...]`` (stop
    exclusive) of a ``n_bars`` calendar.

    An episode of ``horizon`` steps (None: to the segment's end) starting at bar ``s``
    needs ``lookback - 1`` bars of history before it and its last fill inside the segment.
    """

    lo: Tensor  # (S,) first start bar of each segment
    n: Tensor  # (S,) number of possible starts
    stop: Tensor  # (S,) segment stop (exclusive)
    cum: Tensor  # (S,) float64 cumulative possible starts
    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def build(
        cls,
        ranges: list[tuple[int, int]],
        *,
        n_bars: int,
        lookback: int,
        horizon: int | None,
        device: torch.device | str = "cpu",
    ) -> Segments:
        lo, hi, stop = [], [], []
        need = lookback + (1 if horizon is None else horizon)
        for s, e in ranges:
            if not 0 <= s < e <= n_bars:
                raise ValueError(f"segment ({s}, {e}): expected 0 <= start < stop <= {n_bars}")
            if e - s < need:
                raise ValueError(
                    f"segment ({s}, {e}) has {e - s} bars, expected >= lookback + episode_bars "
                    f"= {need}"
                )
            lo.append(s + lookback - 1)
            hi.append(e - 2 if horizon is None else e - 1 - horizon)
            stop.append(e)
        dev = torch.device(device)
        lo_t = torch.tensor(lo, dtype=torch.long, device=dev)
        n = torch.tensor(hi, dtype=torch.long, device=dev) - lo_t + 1
        return cls(
            lo=lo_t,
            n=n,
            stop=torch.tensor(stop, dtype=torch.long, device=dev),
            cum=torch.cumsum(n.to(torch.float64), 0),
            ranges=tuple((int(s), int(e)) for s, e in ranges),
        )

    def starts(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Episode start bars and last bars ``(E,)`` from uniforms ``(E, 2)``: a segment in
        proportion to its possible starts, then a start uniformly inside it."""
        seg = torch.searchsorted(self.cum, u[:, 0] * self.cum[-1], right=True)
        seg = seg.clamp_max(self.cum.shape[0] - 1)
        start = self.lo[seg] + (u[:, 1] * self.n[seg]).long()
        return start, self.stop[seg] - 1
