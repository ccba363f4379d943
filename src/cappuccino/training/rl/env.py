"""The RL environment: the market runtime's simulator and observation, plus a reward and
autoreset; ``n_envs`` independent portfolios stepped as one tensor batch.

Time alignment (the contract every test checks):

- The observation at bar ``t`` uses data up to bar ``t``'s close only: features of bars
  ``t - lookback + 1 .. t`` and the portfolio valued at ``close[t]``
  (:class:`~cappuccino.market.ObservationSpec`).
- The action chosen at bar ``t`` is decoded by :func:`~cappuccino.market.decode_actions`
  and filled at bar ``t + 1``'s **open** by :class:`~cappuccino.market.BarSimulator`
  (fees, slippage, minimum order, risk limits).
- The step's return is ``ln(equity at close[t+1] / equity at close[t])``.

Episodes start at random bars inside one contiguous segment (several segments may be
given; one is drawn per episode in proportion to its possible starts,
:class:`~cappuccino.market.Segments`) and end after ``episode_bars`` steps or at the
segment's last bar, never crossing it. Ends are time limits, reported as ``truncated``;
``terminated`` is always false (long-only spot cannot go bankrupt). Finished envs reset in
the same step (their last observation is in ``info["final_obs"]``). ``step`` runs no
Python loop over envs, no host sync and no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from cappuccino.config.rl import EnvSettings
from cappuccino.datasets.market import MarketArrays, observation_rows
from cappuccino.features.scaling import Scaler
from cappuccino.market import (
    BarSimulator,
    Fill,
    MarketRules,
    ObservationSpec,
    Portfolio,
    Segments,
    decode_actions,
)
from cappuccino.training.rl.rewards import get_reward
from cappuccino.utils.threads import SMALL_OP_THREADS, torch_threads

SMALL_STEP_FLOATS = 1 << 20
"""Observation floats per step (envs x observation size) below which a CPU step runs on
:data:`~cappuccino.utils.threads.SMALL_OP_THREADS`."""


@dataclass(frozen=True)
class StepInfo:
    """Per-step tensors (``(E,)`` unless stated) for logging and backtests.

    ``final_obs`` (``(E, D)``, the observation before any reset) is built on first access
    only, from the step's final state, so consumers that do not bootstrap pay nothing.
    """

    log_return: Tensor  # portfolio log return of the bar
    equity: Tensor  # equity at close[t+1], before any reset
    fill: Fill  # fill.portfolio is the state at close[t+1], before any reset
    t_end: Tensor  # (E,) bar index t+1 the step ended on
    _final: Callable[[], Tensor] = field(repr=False)

    @cached_property
    def final_obs(self) -> Tensor:
        return self._final()


_BLOCK = 256  # steps of episode-start uniforms drawn at once


class BatchedTradingEnv:
    """``n_envs`` long-only portfolios on shared market arrays; see the module docstring.

    Args:
        data: aligned bars and raw features (any period; ``segments`` index into it).
        settings: lookback, episode length, action mode, reward, scaling.
        rules: market rules (fees, minimum order, risk limits).
        n_envs: number of independent portfolios.
        scaler: feature scaler fitted on the training segment; shape ``(n_assets, F)``.
        segments: ``[(start, stop), ...]`` contiguous bar ranges (stop exclusive);
            default the whole of ``data``.
        seed: seeds the env's own generator (starts of episodes).
        device: where every tensor lives.
        autoreset: reset finished envs inside ``step`` (off for the single-env wrapper).
        compile: run the transition through ``torch.compile`` (fuses the elementwise
            accounting into a few kernels; needs a C++ compiler on CPU, costs a one-off
            compilation). Same rules and results up to floating-point rounding.
    """

    def __init__(
        self,
        data: MarketArrays,
        *,
        settings: EnvSettings,
        rules: MarketRules,
        n_envs: int,
        scaler: Scaler,
        segments: list[tuple[int, int]] | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        autoreset: bool = True,
        compile: bool = False,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs: got {n_envs}, expected >= 1")
        if settings.feature_set != data.feature_set:
            raise ValueError(
                f"feature_set: env settings say {settings.feature_set!r}, data has "
                f"{data.feature_set!r}"
            )
        self.data = data
        self.settings = settings
        self.rules = rules
        self.n_envs = n_envs
        self.n_assets = data.n_assets
        self.n_features = len(data.feature_names)
        self.lookback = settings.lookback
        self.spec = ObservationSpec(
            n_assets=self.n_assets, n_features=self.n_features, lookback=self.lookback
        )
        self.scaler = scaler
        self.device = torch.device(device)
        self.autoreset = autoreset
        self.obs_dim = self.spec.dim
        # a step is many small ops: on CPU, 1 thread unless the batch is large (see
        # cappuccino.utils.threads.torch_threads: 1.8x at 256 envs on 2 cores)
        small = self.device.type == "cpu" and n_envs * self.obs_dim < SMALL_STEP_FLOATS
        self._step_threads = SMALL_OP_THREADS if small else None
        self.reward_fn = get_reward(settings.reward)
        dev = self.device
        self.sim = BarSimulator(data.open, data.close, rules=rules, device=dev)
        self.open, self.close = self.sim.open, self.sim.close
        # (T, A * F): one row per bar, so a window is a row gather (index_select)
        self._feature_rows = observation_rows(data, scaler, settings.obs_clip, dev)
        growth = (self.close[1:] / self.close[:-1]).mean(dim=1)
        self.bench_log_return = torch.cat([torch.log(growth), growth.new_zeros(1)])
        self.trade_fraction = settings.trade_fraction or 1.0 / self.n_assets
        self.horizon = settings.episode_bars if settings.episode_bars is not None else 2**62
        self._set_segments(segments or [(0, data.n_bars)])
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(seed)
        self._no_uniforms = torch.zeros((n_envs, 2), dtype=torch.float64, device=dev)
        self._u = self._no_uniforms.unsqueeze(0)
        self._k: int = _BLOCK
        if compile:
            self._action_core = torch.compile(self._action_core, dynamic=False)  # type: ignore[method-assign]
            self._targets_core = torch.compile(self._targets_core, dynamic=False)  # type: ignore[method-assign]
        self.reset()

    # ----------------------------------------------------------------- segments
    def _set_segments(self, segments: list[tuple[int, int]]) -> None:
        self.seg = Segments.build(
            segments,
            n_bars=self.data.n_bars,
            lookback=self.lookback,
            horizon=self.settings.episode_bars,
            device=self.device,
        )
        self.segments = list(segments)

    def _uniforms(self) -> Tensor:
        """``(E, 2)`` uniforms for the next episode starts, drawn from the env's generator
        in blocks of ``_BLOCK`` steps (one draw per block instead of one per step)."""
        if self._k >= _BLOCK:
            self._u = torch.rand(
                (_BLOCK, self.n_envs, 2), generator=self.generator, device=self.device,
                dtype=torch.float64,
            )  # fmt: skip
            self._k = 0
        u = self._u[self._k]
        self._k += 1
        return u

    # ----------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, starts: Tensor | None = None) -> Tensor:
        """Start every env afresh (all cash); returns observations ``(E, D)``.

        ``starts`` fixes each env's first bar (episode then runs ``episode_bars`` or to the
        end of the data); otherwise starts are drawn from the segments.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        self._k = _BLOCK  # draw a fresh block of uniforms
        if starts is None:
            self.t, self.last = self.seg.starts(self._uniforms())
        else:
            self.t = (
                torch.as_tensor(starts, dtype=torch.long, device=self.device)
                .expand(self.n_envs)
                .clone()
            )
            if bool(((self.t < self.lookback - 1) | (self.t > self.data.n_bars - 2)).any()):
                raise ValueError(
                    f"starts: expected bars in [{self.lookback - 1}, {self.data.n_bars - 2}]"
                )
            self.last = torch.full_like(self.t, self.data.n_bars - 1)
        self.steps = torch.zeros_like(self.t)
        self.portfolio = self.sim.new_portfolios(self.n_envs)
        self.equity = self.sim.equity(self.portfolio, self.t)
        self.reward_state = torch.zeros((self.n_envs, 2), dtype=torch.float64, device=self.device)
        return self.observation()

    def observation(self) -> Tensor:
        """``(E, D)`` float32 observation at the current bar (see the module docstring)."""
        pf = self.portfolio
        return self.observe_state(self.t, pf.cash, pf.units, self.equity)

    def observe_state(self, t: Tensor, cash: Tensor, units: Tensor, equity: Tensor) -> Tensor:
        """Observation ``(N, D)`` of arbitrary states: bars ``t`` ``(N,)``, cash ``(N,)``,
        units ``(N, A)``, equity ``(N,)`` at ``close[t]`` (e.g. the final states of
        finished episodes, to bootstrap their value after a rollout)."""
        return self.spec.build(self._feature_rows, t, self._head(t, cash, units, equity))

    def _head(self, t: Tensor, cash: Tensor, units: Tensor, equity: Tensor) -> Tensor:
        return self.spec.head(cash, units, self.close[t], equity)

    @property
    def fill_price(self) -> Tensor:
        """``(E, A)`` price the next orders fill at: the open of bar ``t + 1``."""
        return self.sim.fill_price(self.t)

    def action_to_target_units(self, action: Tensor) -> Tensor:
        """Target units ``(E, A)`` for actions ``(E, A)`` in [-1, 1]
        (:func:`~cappuccino.market.decode_actions`)."""
        return self._targets(action, self.t, self.portfolio.cash, self.portfolio.units)

    def _targets(self, action: Tensor, t: Tensor, cash: Tensor, units: Tensor) -> Tensor:
        return decode_actions(
            action, mode=self.settings.action_mode, cash=cash, units=units,
            price=self.open[t + 1], trade_fraction=self.trade_fraction,
        )  # fmt: skip

    def step(
        self, action: Tensor, *, obs_out: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, StepInfo]:
        """Fill ``action`` ``(E, A)`` at the next open; see :meth:`step_targets`."""
        return self._advance(self._action_core, action.to(self.device), obs_out)

    def step_targets(
        self, target_units: Tensor, *, obs_out: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, StepInfo]:
        """Trade towards ``target_units`` at bar ``t + 1``'s open and advance one bar.

        Returns ``(obs (E, D) float32, reward (E,) float32, terminated (E,) bool,
        truncated (E,) bool, info)``. With ``obs_out`` (a contiguous ``(E, D)`` float32
        tensor, e.g. the next slot of a rollout buffer) the observation is written there
        and returned, saving an allocation and a copy.
        """
        return self._advance(self._targets_core, target_units.to(self.device), obs_out)

    # ----------------------------------------------------------------- the transition
    def _advance(
        self, core: Callable[..., tuple[Tensor, ...]], x: Tensor, obs_out: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, StepInfo]:
        threads = self._step_threads
        with torch_threads(threads) if threads is not None else nullcontext():
            return self._advance_now(core, x, obs_out)

    def _advance_now(
        self, core: Callable[..., tuple[Tensor, ...]], x: Tensor, obs_out: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, StepInfo]:
        u = self._uniforms() if self.autoreset else self._no_uniforms
        pf = self.portfolio
        out = core(
            x,
            self.t,
            self.last,
            self.steps,
            pf.cash,
            pf.units,
            pf.entry_price,
            self.equity,
            self.reward_state,
            u,
        )
        (self.t, self.last, self.steps, cash, units, entry, self.equity, self.reward_state,
         head, reward, truncated, log_ret, equity_end, t_end, cash_end, units_end, entry_end,
         bought, sold, price, asset_fees, traded, fees, stopped) = out  # fmt: skip
        self.portfolio = Portfolio(cash=cash, units=units, entry_price=entry)
        # the window gather stays in eager mode: ATen's row copy beats a compiled gather loop
        obs = self.spec.build(self._feature_rows, self.t, head, obs_out)
        fill = Fill(
            portfolio=Portfolio(cash=cash_end, units=units_end, entry_price=entry_end),
            bought=bought,
            sold=sold,
            price=price,
            asset_fees=asset_fees,
            traded_notional=traded,
            fees=fees,
            stopped=stopped,
        )
        info = StepInfo(
            log_return=log_ret,
            equity=equity_end,
            fill=fill,
            t_end=t_end,
            _final=lambda: self.observe_state(t_end, cash_end, units_end, equity_end),
        )
        return obs, reward, torch.zeros_like(truncated), truncated, info

    def _action_core(self, action: Tensor, t: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        cash, units = rest[2], rest[3]
        return self._transition(self._targets(action, t, cash, units), t, *rest)

    def _targets_core(self, target_units: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        return self._transition(target_units, *state)

    def _transition(
        self,
        target_units: Tensor,
        t: Tensor,
        last: Tensor,
        steps: Tensor,
        cash: Tensor,
        units: Tensor,
        entry: Tensor,
        equity: Tensor,
        reward_state: Tensor,
        u: Tensor,
    ) -> tuple[Tensor, ...]:
        """One bar's accounting for every env as a pure function of tensors (compilable);
        the observation is gathered afterwards by :meth:`ObservationSpec.build`."""
        fill, equity1 = self.sim.step(
            Portfolio(cash=cash, units=units, entry_price=entry), target_units, t
        )
        pf = fill.portfolio
        t1 = t + 1
        log_ret = torch.log(equity1 / equity)
        reward, rstate = self.reward_fn(
            log_ret, self.bench_log_return[t], reward_state, self.settings.dsr_eta
        )
        reward = (reward * self.settings.reward_scale).to(torch.float32)
        steps1 = steps + 1
        truncated = (steps1 >= self.horizon) | (t1 >= last)
        if self.autoreset:
            start, start_last = self.seg.starts(u)
            d, d2 = truncated, truncated.unsqueeze(1)
            t2 = torch.where(d, start, t1)
            last2 = torch.where(d, start_last, last)
            steps2 = torch.where(d, torch.zeros_like(steps1), steps1)
            cash2 = torch.where(d, torch.full_like(pf.cash, self.rules.initial_cash), pf.cash)
            units2 = torch.where(d2, torch.zeros_like(pf.units), pf.units)
            entry2 = torch.where(d2, torch.zeros_like(pf.entry_price), pf.entry_price)
            equity2 = torch.where(d, torch.full_like(equity1, self.rules.initial_cash), equity1)
            rstate = torch.where(d2, torch.zeros_like(rstate), rstate)
        else:
            t2, last2, steps2 = t1, last, steps1
            cash2, units2, entry2, equity2 = pf.cash, pf.units, pf.entry_price, equity1
        return (
            t2, last2, steps2, cash2, units2, entry2, equity2, rstate,
            self._head(t2, cash2, units2, equity2), reward, truncated, log_ret, equity1, t1,
            pf.cash, pf.units, pf.entry_price,
            fill.bought, fill.sold, fill.price, fill.asset_fees, fill.traded_notional, fill.fees,
            fill.stopped,
        )  # fmt: skip
