"""Synthetic market arrays for env and PPO tests."""

from __future__ import annotations

import numpy as np

from cappuccino.bundles.manifest import TrainPeriod
from cappuccino.config.rl import EnvSettings
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules
from cappuccino.training.rl.env import BatchedTradingEnv


def market(
    open_: np.ndarray, close: np.ndarray, features: np.ndarray | None = None
) -> MarketArrays:
    """Arrays over ``T`` hourly bars; features default to the log close (one feature)."""
    t, a = close.shape
    if features is None:
        features = np.log(close)[:, :, None]
    return MarketArrays(
        timestamps=(1_600_000_000_000 + 3_600_000 * np.arange(t)).astype(np.int64),
        symbols=tuple(f"A{i}/USDT" for i in range(a)),
        feature_set="cappuccino14",
        feature_names=tuple(f"f{i}" for i in range(features.shape[2])),
        timeframe=Timeframe.parse("1h"),
        open=np.asarray(open_, dtype=np.float64),
        close=np.asarray(close, dtype=np.float64),
        features=np.asarray(features, dtype=np.float64),
        filled=np.zeros((t, a), dtype=bool),
    )


def random_market(t: int = 300, a: int = 3, seed: int = 0) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(t, a)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.002, size=(t, a)))
    feats = np.stack([np.log(close), rng.normal(size=(t, a))], axis=2)
    return market(open_, close, feats)


def make_env(
    data: MarketArrays,
    n_envs: int = 1,
    *,
    rules: MarketRules | None = None,
    seed: int = 0,
    autoreset: bool = True,
    segments: list[tuple[int, int]] | None = None,
    scaler: Scaler | None = None,
    compile: bool = False,
    **settings: object,
) -> BatchedTradingEnv:
    base: dict[str, object] = {"lookback": 2, "episode_bars": 20, "reward_scale": 1.0}
    base.update(settings)
    return BatchedTradingEnv(
        data,
        settings=EnvSettings(**base),  # type: ignore[arg-type]
        rules=rules or MarketRules(buy_fee_rate=0.0, sell_fee_rate=0.0, min_order_notional=0.0),
        n_envs=n_envs,
        scaler=scaler or Scaler.fit(data.features),
        segments=segments,
        seed=seed,
        autoreset=autoreset,
        compile=compile,
    )


def period_of(data: MarketArrays) -> TrainPeriod:
    """The training period a bundle records for ``data``."""
    d = data.describe()
    return TrainPeriod(start=d["start"], end=d["end"], n_bars=data.n_bars)
