"""Backtests through the same env and market core that training uses.

A policy maps the env's state to target units; the env fills them at the next
bar's open (:func:`cappuccino.market.rebalance`) and values the portfolio at the
close. Benchmarks are policies too:

- ``cash``: never trades.
- ``buy_and_hold``: equal weights bought at the first fill, then held.
- ``equal_weight:k``: equal weights, rebalanced every ``k`` bars (``equal_weight`` = every bar).
- ``single:SYMBOL``: all in one asset at the first fill, then held.
- an RL bundle: the trained policy's deterministic action (mode of its distribution).
- per-bar buy signals of a classifier (:class:`SignalPolicy`): equal slots, held for the
  label's horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from torch import Tensor

from cappuccino.config.rl import EnvSettings
from cappuccino.datasets.market import MarketArrays
from cappuccino.evaluation.metrics import summarize
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules
from cappuccino.training.rl.bundle import RLBundle
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.policy import ActorCritic


class Policy(Protocol):
    name: str

    def targets(self, env: BatchedTradingEnv, obs: Tensor, step: int) -> Tensor:
        """Target units ``(1, A)`` for the next fill."""
        ...


@dataclass
class CashPolicy:
    name: str = "cash"

    def targets(self, env: BatchedTradingEnv, obs: Tensor, step: int) -> Tensor:
        return torch.zeros_like(env.portfolio.units)


@dataclass
class RebalancePolicy:
    """Hold ``weights``; rebalance to them on step 0 and every ``every`` steps (0: never again)."""

    name: str
    weights: list[float]
    every: int = 0

    def targets(self, env: BatchedTradingEnv, obs: Tensor, step: int) -> Tensor:
        if step == 0 or (self.every > 0 and step % self.every == 0):
            w = torch.tensor([self.weights], dtype=torch.float64, device=env.device)
            return env.weights_to_target_units(w)
        return env.portfolio.units


@dataclass
class NetPolicy:
    """A trained actor's deterministic action (the mode of its distribution)."""

    net: ActorCritic
    name: str = "policy"

    def targets(self, env: BatchedTradingEnv, obs: Tensor, step: int) -> Tensor:
        dev = next(self.net.parameters()).device
        with torch.no_grad():
            action = self.net.act(obs.to(dev)).to(env.device)
        return env.action_to_target_units(action)


def BundlePolicy(bundle: RLBundle, name: str = "policy") -> NetPolicy:
    """The policy of an RL bundle."""
    return NetPolicy(bundle.policy, name)


class EnsemblePolicy:
    """The mean action of several RL bundles (``cappuccino tune best --top K``).

    Each member observes the state through its own lookback and scaler (a shadow env on
    the same bars builds its observation); the mean of their deterministic actions goes
    through the running env's action mode, which every member must share. ``lookback``
    (in ``env_settings``) is the longest member's, so the first decision has history for
    all; ``rules`` are the first member's.
    """

    def __init__(self, members: list[RLBundle], name: str = "ensemble") -> None:
        if not members:
            raise ValueError("ensemble: no members")
        modes = {(m.env_settings.action_mode, m.env_settings.trade_fraction) for m in members}
        if len(modes) > 1:
            raise ValueError(f"ensemble: members differ in action mode / trade fraction: {modes}")
        self.members = members
        self.name = name
        lookback = max(m.env_settings.lookback for m in members)
        self.env_settings = members[0].env_settings.model_copy(update={"lookback": lookback})
        self.rules = members[0].rules
        self._shadows: tuple[MarketArrays, list[BatchedTradingEnv]] | None = None

    def targets(self, env: BatchedTradingEnv, obs: Tensor, step: int) -> Tensor:
        if self._shadows is None or self._shadows[0] is not env.data:
            for m in self.members:
                m.check_data(env.data)
            shadows = [
                BatchedTradingEnv(env.data, settings=m.env_settings, rules=m.rules, n_envs=1,
                                  scaler=m.scaler, device=env.device, autoreset=False)
                for m in self.members
            ]  # fmt: skip
            self._shadows = (env.data, shadows)
        pf = env.portfolio
        actions = []
        with torch.no_grad():
            for m, shadow in zip(self.members, self._shadows[1], strict=True):
                o = shadow.observe_state(env.t, pf.cash, pf.units, env.equity)
                actions.append(m.policy.act(o.to("cpu")).to(env.device))
        return env.action_to_target_units(torch.stack(actions).mean(dim=0))


class SignalPolicy:
    """Trade a classifier's buy signals: long-only, one equal slot (``1/A`` of equity) per asset.

    ``signal[i, a]`` is the decision at the close of bar ``timestamps[i]`` (epoch ms, bar
    open time, as the predictions are keyed; consecutive bars of one timeframe). An asset
    is *on* at bar ``t`` when it had a signal at any of the last ``hold_bars`` bars
    (``t - hold_bars + 1 .. t``): a signal
    opens (or extends) a position for the horizon its label looked ahead. When an asset
    turns on it is bought for its slot at the next open; when it turns off it is sold; a
    position that stays on is left alone (no drift rebalancing, no churn). Bars with no
    prediction (warm-up, filled gaps) carry no signal.
    """

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
        self._cache: tuple[MarketArrays, Tensor] | None = None

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

    def targets(self, env: BatchedTradingEnv, obs: Tensor, step: int) -> Tensor:
        if env.data.symbols != self.symbols:
            raise ValueError(f"signals for {self.symbols}, market holds {env.data.symbols}")
        if self._cache is None or self._cache[0] is not env.data:  # this calendar, mapped once
            on_all = torch.as_tensor(self.active(env.data.timestamps), device=env.device)
            self._cache = (env.data, on_all)
        on = self._cache[1][env.t]  # (1, A)
        units = env.portfolio.units
        slot = env.weights_to_target_units(torch.full_like(units, 1.0 / len(self.symbols)))
        return torch.where(on, torch.where(units > 0, units, slot), torch.zeros_like(units))


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
        from cappuccino.data.schema import normalize_symbol

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


@dataclass
class BacktestResult:
    """One policy over one period. ``equity`` has ``n_bars + 1`` values (start first)."""

    name: str
    timestamps: npt.NDArray[np.int64]  # (n_bars + 1,) close time of each equity point, ms
    equity: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]  # (n_bars + 1, A) at each close
    traded_notional: npt.NDArray[np.float64]  # (n_bars,)
    fees: npt.NDArray[np.float64]  # (n_bars,)
    bought: npt.NDArray[np.float64]  # (n_bars, A) units
    sold: npt.NDArray[np.float64]  # (n_bars, A) units
    fill_price: npt.NDArray[np.float64]  # (n_bars, A) execution price (open +- slippage)
    asset_fees: npt.NDArray[np.float64]  # (n_bars, A) fees per asset, quote currency
    symbols: tuple[str, ...]
    metrics: dict[str, Any]

    @property
    def returns(self) -> npt.NDArray[np.float64]:
        """Per-bar simple returns."""
        return self.equity[1:] / self.equity[:-1] - 1.0

    def equity_frame(self) -> pl.DataFrame:
        frame = pl.DataFrame({"timestamp": self.timestamps, "equity": self.equity}).with_columns(
            pl.col("timestamp").cast(pl.Datetime("ms", "UTC"))
        )
        return frame.with_columns(
            pl.Series(f"w_{s}", self.weights[:, i]) for i, s in enumerate(self.symbols)
        )

    def trades_frame(self) -> pl.DataFrame:
        """One row per executed order: fill time (the open of the bar after the decision,
        i.e. the decision bar's close time), symbol, side, units, execution price, notional
        and fee (quote currency)."""
        parts = []
        for side, arr in (("buy", self.bought), ("sell", self.sold)):
            t, a = np.nonzero(arr > 0)
            parts.append(
                pl.DataFrame(
                    {
                        "timestamp": self.timestamps[t],
                        "symbol": np.asarray(self.symbols, dtype=object)[a].astype(str),
                        "side": np.full(t.size, side),
                        "units": arr[t, a],
                        "price": self.fill_price[t, a],
                        "notional": arr[t, a] * self.fill_price[t, a],
                        "fee": self.asset_fees[t, a],
                    },
                    schema={
                        "timestamp": pl.Int64,
                        "symbol": pl.String,
                        "side": pl.String,
                        "units": pl.Float64,
                        "price": pl.Float64,
                        "notional": pl.Float64,
                        "fee": pl.Float64,
                    },
                )
            )
        return (
            pl.concat(parts)
            .with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
            .sort(["timestamp", "symbol"])
        )


def run_backtest(
    data: MarketArrays,
    policy: Policy,
    *,
    env_settings: EnvSettings,
    rules: MarketRules,
    scaler: Scaler,
    first: int,
    device: torch.device | str = "cpu",
) -> BacktestResult:
    """Run ``policy`` from bar ``first`` (the first decision, at its close) to the last bar.

    Bars before ``first`` serve only as the observation window's history.
    """
    settings = env_settings.model_copy(update={"episode_bars": None})
    env = BatchedTradingEnv(
        data,
        settings=settings,
        rules=rules,
        n_envs=1,
        scaler=scaler,
        device=device,
        autoreset=False,
    )
    obs = env.reset(starts=torch.tensor([first]))
    n = data.n_bars - 1 - first
    a = data.n_assets
    equity = torch.empty(n + 1, dtype=torch.float64)
    weights = torch.empty((n + 1, a), dtype=torch.float64)
    traded = torch.empty(n, dtype=torch.float64)
    fees = torch.empty(n, dtype=torch.float64)
    bought = torch.empty((n, a), dtype=torch.float64)
    sold = torch.empty((n, a), dtype=torch.float64)
    price = torch.empty((n, a), dtype=torch.float64)
    asset_fees = torch.empty((n, a), dtype=torch.float64)
    equity[0] = env.equity[0]
    weights[0] = 0.0
    for step in range(n):
        target = policy.targets(env, obs, step)
        obs, _, _, _, info = env.step_targets(target)
        price[step] = info.fill.price[0]
        asset_fees[step] = info.fill.asset_fees[0]
        equity[step + 1] = info.equity[0]
        weights[step + 1] = env.portfolio.weights(env.close[env.t])[0]
        traded[step] = info.fill.traded_notional[0]
        fees[step] = info.fill.fees[0]
        bought[step] = info.fill.bought[0]
        sold[step] = info.fill.sold[0]
    eq = equity.numpy()
    w = weights.numpy()
    metrics = summarize(
        eq,
        periods_per_year=data.timeframe.periods_per_year,
        traded_notional=traded.numpy(),
        fees=fees.numpy(),
        weights=w[1:],
    )
    close_ms = data.timestamps[first:] + data.timeframe.ms
    return BacktestResult(
        name=policy.name,
        timestamps=close_ms.astype(np.int64),
        equity=eq,
        weights=w,
        traded_notional=traded.numpy(),
        fees=fees.numpy(),
        bought=bought.numpy(),
        sold=sold.numpy(),
        fill_price=price.numpy(),
        asset_fees=asset_fees.numpy(),
        symbols=data.symbols,
        metrics=metrics,
    )
