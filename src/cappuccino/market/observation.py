"""The observation layout: one :class:`ObservationSpec` for the env, the backtest, live
trading, the FT encoder and its pretraining.

Layout (the seed system's flat vector, ``1 + n + F * n * L`` floats; 988 for 7 assets,
14 features, lookback 10)::

    [cash weight, position weights (n), window]   window = features[t], features[t-1], ...

Each window bar is ``(n_assets, n_features)`` row-major: scaled features, latest bar
first. The portfolio part (the "head") is cash and position values at ``close[t]`` as
fractions of equity. The observation at bar ``t`` uses data up to bar ``t``'s close only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


@dataclass(frozen=True, kw_only=True)
class ObservationSpec:
    """Shape of the flat observation of ``n_assets`` assets, ``n_features`` features per
    asset and ``lookback`` bars. Invalid sizes raise ``ValueError`` naming the value."""

    n_assets: int
    n_features: int
    lookback: int

    def __post_init__(self) -> None:
        for name in ("n_assets", "n_features", "lookback"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ObservationSpec.{name}: got {v!r}, expected an integer >= 1")

    @property
    def head_dim(self) -> int:
        """``1 + n_assets``: the cash weight and one weight per position."""
        return 1 + self.n_assets

    @property
    def n_slots(self) -> int:
        """``n_assets * n_features`` (asset, feature) slots of each window bar."""
        return self.n_assets * self.n_features

    @property
    def dim(self) -> int:
        """Length of the flat observation: ``1 + n_assets + n_features * n_assets * lookback``."""
        return self.head_dim + self.n_slots * self.lookback

    def head(self, cash: Tensor, units: Tensor, close: Tensor, equity: Tensor) -> Tensor:
        """``(N, 1 + A)`` float32 cash and position weights at ``close`` ``(N, A)``;
        ``cash`` and ``equity`` ``(N,)``, ``units`` ``(N, A)``."""
        value = units * close
        return (torch.cat([cash.unsqueeze(1), value], dim=1) / equity.unsqueeze(1)).to(
            torch.float32
        )

    def build(
        self, feature_rows: Tensor, t: Tensor, head: Tensor, out: Tensor | None = None
    ) -> Tensor:
        """Observations ``(N, dim)`` at bars ``t`` ``(N,)``.

        ``feature_rows`` ``(T, A * F)`` float32: scaled features, one row per bar (a window
        is a row gather); ``head`` ``(N, 1 + A)``; ``out`` an optional contiguous
        ``(N, dim)`` float32 tensor written in place (e.g. a rollout buffer's slot).
        """
        idx = (t.unsqueeze(1) - _lags(self.lookback, t.device)).reshape(
            -1
        )  # (N * L,), latest bar first
        window = torch.index_select(feature_rows, 0, idx).reshape(t.shape[0], -1)
        if out is None:
            return torch.cat([head, window], dim=1)
        return torch.cat([head, window], dim=1, out=out)

    def split(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, dim)`` -> portfolio ``(N, 1 + A)`` [cash, weights] and window
        ``(N, L, A, F)`` (index 0 is the latest bar)."""
        if obs.shape[-1] != self.dim:
            raise ValueError(
                f"observation: {obs.shape[-1]} floats, expected {self.dim} for {self.n_assets} "
                f"assets, {self.n_features} features, lookback {self.lookback}"
            )
        k = self.head_dim
        window = obs[:, k:].reshape(obs.shape[0], self.lookback, self.n_assets, self.n_features)
        return obs[:, :k], window

    def slot_window(self, obs: Tensor) -> Tensor:
        """``(N, L, A * F)``: the window with each bar's slots flattened (latest bar first)."""
        _, window = self.split(obs)
        return window.reshape(obs.shape[0], self.lookback, self.n_slots)

    def slot_series(self, obs: Tensor) -> Tensor:
        """``(N, A * F, L)``: each (asset, feature) slot's lagged values, latest first."""
        return self.slot_window(obs).transpose(1, 2)


@lru_cache(maxsize=64)
def _lags(lookback: int, device: torch.device) -> Tensor:
    """``0 .. lookback - 1`` on ``device``, made once (``build`` runs every env step)."""
    return torch.arange(lookback, device=device)
