"""A classifier's per-bar buy signals as a policy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from torch import Tensor

from cappuccino.datasets.market import MarketArrays
from cappuccino.policies.base import MarketView


class SignalPolicy:
    """Trade a classifier's buy signals: long-only, one equal slot (``1/A`` of equity) per asset.

    ``signal[i, a]`` is the decision at the close of bar ``timestamps[i]`` (epoch ms, bar
    open time, as the predictions are keyed; consecutive bars of one timeframe). An asset
    is *on* at bar ``t`` when it had a signal at any of the last ``hold_bars`` bars
    (``t - hold_bars + 1 .. t``): a signal opens (or extends) a position for the horizon
    its label looked ahead. When an asset turns on it is bought for its slot at the next
    open; when it turns off it is sold; a position that stays on is left alone (no drift
    rebalancing, no churn). Bars with no prediction (warm-up, filled gaps) carry no signal.
    """

    lookback = 1

    def __init__(
        self,
        name: str,
        timestamps: npt.NDArray[np.int64],
        symbols: tuple[str, ...],
        signal: npt.NDArray[np.bool_],
        hold_bars: int = 1,
    ) -> None:
        if hold_bars < 1:
            raise ValueError(f"hold_bars: got {hold_bars}, expected >= 1")
        if signal.shape != (timestamps.size, len(symbols)):
            raise ValueError(
                f"signal: shape {signal.shape}, expected {(timestamps.size, len(symbols))}"
            )
        self.name = name
        self.symbols = symbols
        self.hold_bars = hold_bars
        self._ts = np.asarray(timestamps, dtype=np.int64)
        # on[i] = any signal in rows i - hold_bars + 1 .. i (rows are consecutive bars here)
        c = np.cumsum(np.r_[np.zeros((1, len(symbols))), signal.astype(np.int64)], axis=0)
        self._on = (c[1:] - c[np.maximum(np.arange(1, c.shape[0]) - hold_bars, 0)]) > 0
        self._on_bars: npt.NDArray[np.bool_] | None = None
        self._on_dev: Tensor | None = None

    @classmethod
    def from_predictions(
        cls, name: str, predictions: pl.DataFrame, symbols: tuple[str, ...], timeframe_ms: int,
        hold_bars: int = 1,
    ) -> SignalPolicy:  # fmt: skip
        """From ``timestamp, symbol, signal`` rows (``cappuccino predict``'s frame) onto a
        regular calendar of ``timeframe_ms`` bars; missing (timestamp, symbol) pairs are no
        signal."""
        unknown = sorted(set(predictions["symbol"].unique().to_list()) - set(symbols))
        if unknown:
            raise ValueError(f"predictions: symbols {unknown} not among {list(symbols)}")
        ts = predictions["timestamp"].dt.epoch("ms").to_numpy()
        if ts.size == 0:
            raise ValueError("predictions: no rows")
        # the grid runs hold_bars - 1 bars past the last prediction: its holds expire there
        stop = ts.max() + max(hold_bars, 1) * timeframe_ms  # (hold_bars is checked in __init__)
        grid = np.arange(ts.min(), stop, timeframe_ms, dtype=np.int64)
        row = (ts - grid[0]) // timeframe_ms
        if not np.array_equal(grid[row], ts):
            raise ValueError(f"predictions: timestamps off the {timeframe_ms} ms bar grid")
        col = np.searchsorted(np.asarray(symbols), predictions["symbol"].to_numpy())
        signal = np.zeros((grid.size, len(symbols)), dtype=bool)
        signal[row, col] = predictions["signal"].to_numpy()
        return cls(name, grid, symbols, signal, hold_bars)

    def active(self, timestamps: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """``(len(timestamps), A)``: which assets are on at each bar (False off the grid)."""
        i = np.searchsorted(self._ts, timestamps)
        ok = (i < self._ts.size) & (self._ts[np.minimum(i, self._ts.size - 1)] == timestamps)
        out = np.zeros((timestamps.size, len(self.symbols)), dtype=bool)
        out[ok] = self._on[i[ok]]
        return out

    def bind(self, data: MarketArrays) -> None:
        if data.symbols != self.symbols:
            raise ValueError(f"signals for {self.symbols}, market holds {data.symbols}")
        self._on_bars = self.active(data.timestamps)  # this calendar, mapped once
        self._on_dev = None

    def decide(self, view: MarketView) -> Tensor:
        if self._on_bars is None:
            raise ValueError(f"policy {self.name}: bind(data) before deciding")
        if self._on_dev is None or self._on_dev.device != view.t.device:
            self._on_dev = torch.as_tensor(self._on_bars, device=view.t.device)
        on = self._on_dev[view.t]  # (E, A)
        units = view.portfolio.units
        slot = view.weights_to_units(torch.full_like(units, 1.0 / len(self.symbols)))
        return torch.where(on, torch.where(units > 0, units, slot), torch.zeros_like(units))
