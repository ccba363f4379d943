"""A multi-agent network (symbol agents and a portfolio master) as one policy: the
backtest and the paper runner see target units, as from any policy.

It observes through the same :class:`~cappuccino.market.multiagent.MultiAgentSpec` views
the multi-agent env builds (the flat observation of the bound calendar, the telemetry of
the view's portfolios from the same bars' closes), decides with the modes of its
distributions, and decodes through :func:`~cappuccino.market.decode_scores`: the master's
limits are enforced by the market's risk-limit rule with the policy's market rules, as in
training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cappuccino.config.rl import EnvSettings
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules, decode_scores
from cappuccino.models.multiagent import MultiAgentActorCritic
from cappuccino.policies.base import MarketView
from cappuccino.policies.network import NetPolicy


class MultiAgentPolicy(NetPolicy):
    """``net``'s deterministic scores under its master's limits (``use_master`` False: the
    master fixed at multiplier 1 and no caps, as the ``symbols`` stage trained)."""

    def __init__(
        self,
        net: MultiAgentActorCritic,
        *,
        settings: EnvSettings,
        scaler: Scaler,
        rules: MarketRules,
        use_master: bool,
        name: str = "policy",
        check: Callable[[MarketArrays], None] | None = None,
    ) -> None:
        super().__init__(net, settings=settings, scaler=scaler, name=name, check=check)  # type: ignore[arg-type]
        self.ma_net = net
        self.rules = rules
        self.use_master = use_master
        self._close_on: dict[torch.device, Tensor] = {}

    def bind(self, data: MarketArrays) -> None:
        super().bind(data)
        self._close_on = {}

    def _close(self, device: torch.device) -> Tensor:
        if device not in self._close_on:
            assert self._data is not None
            self._close_on[device] = torch.as_tensor(
                self._data.close, dtype=torch.float64, device=device
            )
        return self._close_on[device]

    def actions(self, view: MarketView) -> tuple[Tensor, Tensor | None]:
        """Scores ``(E, A)`` and the master's action ``(E, 1 + A)`` (None when fixed)."""
        obs = self.observe(view)
        pf = view.portfolio
        tel = self.ma_net.spec.telemetry(
            self._close(view.t.device), view.t, pf.cash, pf.units, view.equity
        )
        dev = next(self.ma_net.parameters()).device
        scores, master = self.ma_net.act(obs.to(dev), tel.to(dev), master=self.use_master)
        return scores.to(view.t.device), None if master is None else master.to(view.t.device)

    def decide(self, view: MarketView) -> Tensor:
        scores, master = self.actions(view)
        pf = view.portfolio
        return decode_scores(
            scores, cash=pf.cash, units=pf.units, price=view.fill_price, rules=self.rules,
            master=master,
        )  # fmt: skip
