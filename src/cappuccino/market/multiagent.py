"""The multi-agent observation layout: per-symbol agents and a portfolio master, read off the
single-agent observation (:class:`~cappuccino.market.ObservationSpec`) and the close prices
of the same bars.

One :class:`MultiAgentSpec` serves the multi-agent env, its backtest and paper policy, and
the PettingZoo adapter. Everything at bar ``t`` is computed from bars ``t - lookback + 1 ..
t`` (the bars the observation's window already reads) and the portfolio at ``close[t]``,
so it is causal and needs no history the single-agent observation does not need, and no
state carried between decisions (a paper session restarted mid-run decides the same).

- **Local observation** of symbol ``i`` ``(N, A, d_local)``, ``d_local = L * F + 2``: that
  symbol's window (``L`` bars of its ``F`` scaled features, latest bar first), its
  position weight and the cash weight.
- **Telemetry** ``(N, 7)`` of the portfolio, in percent where it is a return:
  ``cash`` and ``gross`` (the cash weight and the invested share of equity); over the
  window's ``L - 1`` bar returns, the current holdings' (units held fixed) log return,
  volatility (population std of the per-bar log returns) and drawdown (log of the value
  now over the window's highest value, ``<= 0``); and the equal-weight market's log
  return and volatility (``ln`` of the mean price relative, per bar).
- **Master observation** ``(N, 11)``: the telemetry and the symbol agents' intents
  aggregated (permutation invariant): the gross weight their scores ask for, the largest
  intended weight, the concentration of the intended weights (Herfindahl index of the
  weights normalised to sum 1; 0 when all cash) and the mean score. The master's
  per-symbol features ``(N, A, 2)`` are each symbol's intended and current weight.
- **Global state** for a centralised critic ``(N, d_state)``, ``d_state = 1 + A + A * F +
  7``: cash and position weights, the latest bar's scaled features of every symbol, and
  the telemetry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cappuccino.market.actions import action_weights
from cappuccino.market.observation import ObservationSpec, _lags

TELEMETRY: tuple[str, ...] = (
    "cash",
    "gross",
    "hold_return_pct",
    "hold_vol_pct",
    "hold_drawdown_pct",
    "market_return_pct",
    "market_vol_pct",
)
INTENTS: tuple[str, ...] = (
    "intended_gross",
    "intended_max_weight",
    "intended_concentration",
    "mean_score",
)


@dataclass(frozen=True)
class MultiAgentSpec:
    """The multi-agent views of observations laid out by ``base``; see the module docstring."""

    base: ObservationSpec

    @property
    def n_symbols(self) -> int:
        return self.base.n_assets

    @property
    def d_window(self) -> int:
        """``L * F``: one symbol's window, flattened (latest bar first)."""
        return self.base.lookback * self.base.n_features

    @property
    def d_local(self) -> int:
        return self.d_window + 2

    @property
    def d_telemetry(self) -> int:
        return len(TELEMETRY)

    @property
    def d_master(self) -> int:
        return len(TELEMETRY) + len(INTENTS)

    @property
    def d_state(self) -> int:
        return self.base.head_dim + self.base.n_slots + len(TELEMETRY)

    def windows(self, obs: Tensor) -> Tensor:
        """``(N, A, L, F)``: each symbol's window (index 0 of ``L`` the latest bar)."""
        _, window = self.base.split(obs)
        return window.permute(0, 2, 1, 3)

    def local(self, obs: Tensor) -> Tensor:
        """``(N, A, d_local)`` local observations of flat observations ``obs`` ``(N, D)``."""
        n, a = obs.shape[0], self.n_symbols
        head = obs[:, : self.base.head_dim]
        w = self.windows(obs).reshape(n, a, self.d_window)
        cash = head[:, :1].unsqueeze(1).expand(n, a, 1)
        return torch.cat([w, head[:, 1:].unsqueeze(-1), cash], dim=-1)

    def telemetry(
        self, close: Tensor, t: Tensor, cash: Tensor, units: Tensor, equity: Tensor
    ) -> Tensor:
        """``(N, 7)`` float32 telemetry at bars ``t`` ``(N,)`` of portfolios (``cash``
        ``(N,)``, ``units`` ``(N, A)``, ``equity`` ``(N,)`` at ``close[t]``) from ``close``
        ``(T, A)`` float64 prices."""
        lags = _lags(self.base.lookback, t.device)
        idx = t.unsqueeze(1) - lags  # (N, L) latest first
        win = close[idx]  # (N, L, A)
        now = win[:, 0]
        f64 = torch.float64
        eq = equity.to(f64)
        w = units.to(f64) * now / eq.unsqueeze(1)
        cash_w = cash.to(f64) / eq
        rel = win / now.unsqueeze(1)  # price relatives to the decision bar
        lv = torch.log(cash_w.unsqueeze(1) + (w.unsqueeze(1) * rel).sum(-1))  # (N, L), lv[:, 0] = 0
        hold_r = lv[:, :-1] - lv[:, 1:]  # (N, L - 1) per-bar log returns, latest first
        mkt_r = torch.log((win[:, :-1] / win[:, 1:]).mean(-1))
        zero = torch.zeros_like(cash_w)

        def vol(r: Tensor) -> Tensor:
            return r.std(dim=1, correction=0) if r.shape[1] > 1 else zero

        tel = torch.stack(
            [
                cash_w,
                w.sum(-1),
                100.0 * hold_r.sum(-1),
                100.0 * vol(hold_r),
                100.0 * (lv[:, 0] - lv.max(dim=1).values),
                100.0 * mkt_r.sum(-1),
                100.0 * vol(mkt_r),
            ],
            dim=1,
        )
        return tel.to(torch.float32)

    def intent_features(self, scores: Tensor) -> Tensor:
        """``(N, 4)`` float32 aggregate of the symbol agents' ``scores`` ``(N, A)``."""
        iw = action_weights(scores)
        gross = iw.sum(-1)
        share = iw / gross.clamp_min(1e-12).unsqueeze(1)
        hhi = torch.where(gross > 0, (share * share).sum(-1), torch.zeros_like(gross))
        feats = [gross, iw.max(dim=1).values, hhi, scores.to(torch.float64).mean(-1)]
        return torch.stack(feats, dim=1).to(torch.float32)

    def master(self, telemetry: Tensor, scores: Tensor) -> Tensor:
        """``(N, d_master)`` master observations: telemetry and aggregated intents."""
        return torch.cat([telemetry, self.intent_features(scores)], dim=1)

    def master_symbol(self, obs: Tensor, scores: Tensor) -> Tensor:
        """``(N, A, 2)`` float32: each symbol's intended weight and current weight."""
        iw = action_weights(scores).to(torch.float32)
        return torch.stack([iw, obs[:, 1 : self.base.head_dim]], dim=-1)

    def state(self, obs: Tensor, telemetry: Tensor) -> Tensor:
        """``(N, d_state)`` global state: weights, every symbol's latest features, telemetry."""
        k = self.base.head_dim
        return torch.cat([obs[:, : k + self.base.n_slots], telemetry], dim=1)
