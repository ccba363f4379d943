"""Trained networks as policies: one actor, or the mean action of several.

A network observes through its own :class:`~cappuccino.market.ObservationSpec` (lookback),
scaler and clip, built from the calendar it is bound to, and acts through its action mode
(:func:`~cappuccino.market.decode_actions`). It decides with the mode of its distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from cappuccino.config.rl import EnvSettings
from cappuccino.datasets.market import MarketArrays, observation_rows
from cappuccino.features.scaling import Scaler
from cappuccino.market import ObservationSpec, decode_actions
from cappuccino.models.actor_critic import ActorCritic
from cappuccino.policies.base import MarketView


class NetPolicy:
    """A trained actor's deterministic action (the mode of its distribution).

    Args:
        net: the actor-critic (its device is where it runs).
        settings: the env settings it was trained with (lookback, clip, action mode).
        scaler: the observation scaler it was trained with.
        check: called with the data at :meth:`bind` (a bundle checks symbols, features
            and timeframe there and raises ``ValueError`` on a mismatch).
    """

    def __init__(
        self,
        net: ActorCritic,
        *,
        settings: EnvSettings,
        scaler: Scaler,
        name: str = "policy",
        check: Callable[[MarketArrays], None] | None = None,
    ) -> None:
        self.net = net
        self.settings = settings
        self.scaler = scaler
        self.name = name
        self._check = check
        self._data: MarketArrays | None = None
        self._spec: ObservationSpec | None = None
        self._rows_on: dict[torch.device, Tensor] = {}  # scaled feature rows, per device

    @property
    def lookback(self) -> int:
        return self.settings.lookback

    @property
    def action_mode(self) -> str:
        return self.settings.action_mode

    def trade_fraction(self, n_assets: int) -> float:
        return self.settings.trade_fraction or 1.0 / n_assets

    def bind(self, data: MarketArrays) -> None:
        if self._check is not None:
            self._check(data)
        spec = ObservationSpec(
            n_assets=data.n_assets, n_features=len(data.feature_names), lookback=self.lookback
        )
        if spec.dim != self.net.obs_dim:
            raise ValueError(
                f"policy {self.name}: observes {self.net.obs_dim} floats, the data gives {spec.dim}"
            )
        self._data, self._spec, self._rows_on = data, spec, {}

    def _rows(self, device: torch.device) -> tuple[Tensor, ObservationSpec]:
        """The bound calendar's scaled feature rows on ``device`` (built once per device)."""
        if self._data is None or self._spec is None:
            raise ValueError(f"policy {self.name}: bind(data) before deciding")
        if device not in self._rows_on:
            self._rows_on[device] = observation_rows(
                self._data, self.scaler, self.settings.obs_clip, device
            )
        return self._rows_on[device], self._spec

    def observe(self, view: MarketView) -> Tensor:
        """``(E, D)`` observation of the view's portfolios at bar ``view.t``."""
        rows, spec = self._rows(view.t.device)
        pf = view.portfolio
        head = spec.head(pf.cash, pf.units, view.close, view.equity)
        return spec.build(rows, view.t, head)

    def action(self, view: MarketView) -> Tensor:
        """``(E, A)`` deterministic action in [-1, 1], on the view's device."""
        dev = next(self.net.parameters()).device
        with torch.no_grad():
            return self.net.act(self.observe(view).to(dev)).to(view.t.device)

    def decide(self, view: MarketView) -> Tensor:
        return decode_actions(
            self.action(view), mode=self.action_mode, cash=view.portfolio.cash,
            units=view.portfolio.units, price=view.fill_price,
            trade_fraction=self.trade_fraction(view.fill_price.shape[-1]),
        )  # fmt: skip


class EnsemblePolicy:
    """The mean action of several networks (``cappuccino tune best --top K``).

    Each member observes through its own lookback and scaler; the mean of their
    deterministic actions goes through the action mode that every member must share.
    ``lookback`` is the longest member's, so the first decision has history for all.
    """

    def __init__(self, members: Sequence[NetPolicy], name: str = "ensemble") -> None:
        if not members:
            raise ValueError("ensemble: no members")
        modes = {(m.action_mode, m.settings.trade_fraction) for m in members}
        if len(modes) > 1:
            raise ValueError(f"ensemble: members differ in action mode / trade fraction: {modes}")
        self.members = list(members)
        self.name = name

    @property
    def lookback(self) -> int:
        return max(m.lookback for m in self.members)

    def bind(self, data: MarketArrays) -> None:
        for m in self.members:
            m.bind(data)

    def decide(self, view: MarketView) -> Tensor:
        first = self.members[0]
        mean = torch.stack([m.action(view) for m in self.members]).mean(dim=0)
        return decode_actions(
            mean, mode=first.action_mode, cash=view.portfolio.cash, units=view.portfolio.units,
            price=view.fill_price, trade_fraction=first.trade_fraction(view.fill_price.shape[-1]),
        )  # fmt: skip
