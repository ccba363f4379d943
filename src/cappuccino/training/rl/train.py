"""``cappuccino rl train``: read the store, build arrays, fit the scaler on the training
period only, train PPO, write the bundle."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cappuccino.bundles.encoder import PretrainedEncoder, resolve_encoder
from cappuccino.bundles.manifest import TrainPeriod
from cappuccino.bundles.rl import save_bundle
from cappuccino.config.rl import RLTrainConfig, SplitSettings
from cappuccino.datasets.market import MarketArrays, fit_scaler, load_market
from cappuccino.features.scaling import Scaler
from cappuccino.models.summary import write_model_summary
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.ppo import train_ppo
from cappuccino.utils.devices import default_device
from cappuccino.utils.seeding import seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    bundle: Path
    data: MarketArrays
    train: MarketArrays
    summary: dict[str, Any]


def train_period(data: MarketArrays, split: SplitSettings) -> MarketArrays:
    """The training period's bars (:meth:`MarketArrays.training_bounds`)."""
    return data.slice(*data.training_bounds(split))


def holdout_start(data: MarketArrays, split: SplitSettings) -> datetime:
    """First out-of-sample bar: ``test_start``, else the bar ``embargo_bars`` after
    ``train_end``."""
    if split.test_start is not None:
        return split.test_start
    first = data.index_of(split.train_end, default=0, side="right") + split.embargo_bars
    if first >= data.n_bars - 1:
        raise ValueError(
            f"test period: no bars after {split.train_end} (+{split.embargo_bars} embargo)"
        )
    return data.datetime_at(first)


def _last_finite(history: list[dict[str, float]], key: str) -> float | None:
    """Most recent finite value of ``key`` (updates where no episode ended hold NaN)."""
    return next((r[key] for r in reversed(history) if math.isfinite(r[key])), None)


UpdateHook = Callable[[dict[str, float], Any, Scaler], None]


def run_scaler(cfg: RLTrainConfig, train: MarketArrays) -> tuple[Scaler, PretrainedEncoder | None]:
    """The observation scaler of a run: fitted on its training period, or, with a pretrained
    encoder (checked against the run: data, env, architecture, and that it saw no bar after
    ``split.train_end``), the encoder's own. An encoder of another timeframe
    (``ppo.ft.allow_timeframe_transfer``) saw other feature distributions (4h volumes are
    about 4x the hourly ones): the run fits its own scaler on its training period."""
    ft = cfg.ppo.ft
    if ft is None or ft.pretrained is None:
        return fit_scaler(train, cfg.env.scaler), None
    enc = resolve_encoder(ft, data=train, env=cfg.env, not_after=cfg.split.train_end)
    log.info("PPO starts from the pretrained encoder %s (%s weights)", enc.path, enc.weights)
    return enc.observation_scaler(train, cfg.env.scaler), enc


def train_rl(
    cfg: RLTrainConfig, data: MarketArrays | None = None, on_update: UpdateHook | None = None
) -> TrainResult:
    """Train PPO per ``cfg``; the bundle goes to ``cfg.output_dir / 'bundle'``.
    ``on_update(row, policy, scaler)`` is called after every update."""
    seed_everything(cfg.seed)
    if data is None:
        data = load_market(
            cfg.data.store, cfg.data.timeframe, cfg.data.symbols, cfg.env.feature_set
        )
    train = train_period(data, cfg.split)
    device = default_device(None if cfg.ppo.device == "auto" else cfg.ppo.device)
    if cfg.mappo is not None:
        return _train_multiagent(cfg, data, train, device, on_update)
    scaler, pretrained = run_scaler(cfg, train)
    env = BatchedTradingEnv(
        train,
        settings=cfg.env,
        rules=cfg.market,
        n_envs=cfg.ppo.n_envs,
        scaler=scaler,
        seed=cfg.seed,
        device=device,
        compile=cfg.compile,
    )
    log.info(
        "PPO on %d bars x %d assets (%s .. %s), %d timesteps on %s",
        train.n_bars,
        train.n_assets,
        train.describe()["start"],
        train.describe()["end"],
        cfg.ppo.total_timesteps,
        device,
    )
    report = _reporter(cfg, scaler, on_update)

    result = train_ppo(
        env, cfg.ppo, seed=cfg.seed, compile=cfg.compile, on_update=report,
        encoder_state=pretrained.state_dict if pretrained else None,
    )  # fmt: skip
    period = {k: train.describe()[k] for k in ("start", "end", "n_bars")}
    path = save_bundle(
        cfg.output_dir / "bundle",
        result.policy,
        data=train,
        env_settings=cfg.env,
        rules=cfg.market,
        scaler=scaler,
        config=cfg.model_dump(mode="json"),
        history=result.history,
        train_period=TrainPeriod(**period),
        pretrained_encoder=pretrained.provenance(train.timeframe.label) if pretrained else None,
    )
    obs = torch.zeros(2, result.policy.obs_dim, device=device)
    write_model_summary(result.policy, [obs], cfg.output_dir / "model_summary.txt")
    return TrainResult(bundle=path, data=data, train=train,
                       summary=_summary(path, period, result, device))  # fmt: skip


def _reporter(cfg: RLTrainConfig, scaler: Scaler, on_update: UpdateHook | None
              ) -> Callable[[dict[str, float], Any], None]:  # fmt: skip
    """The per-update hook of a run: ``on_update`` and a log line every tenth of the run."""
    every = max(1, cfg.ppo.n_updates // 10)

    def report(row: dict[str, float], policy: Any) -> None:
        if on_update is not None:
            on_update(row, policy, scaler)
        if int(row["update"]) % every == 0 or int(row["update"]) == cfg.ppo.n_updates:
            log.info(
                "update %d/%d: %d steps, episode log return %.4f, entropy %.3f, %.1f s",
                int(row["update"]), cfg.ppo.n_updates, int(row["timesteps"]),
                row["mean_episode_log_return"], row["entropy"], row["seconds"],
            )  # fmt: skip

    return report


def _summary(path: Path, period: dict[str, Any], result: Any, device: torch.device
             ) -> dict[str, Any]:  # fmt: skip
    last = result.history[-1]
    return {
        "bundle": str(path),
        "train_period": period,
        "timesteps": result.timesteps,
        "updates": len(result.history),
        "seconds": round(result.seconds, 2),
        "device": str(device),
        "last_mean_episode_log_return": _last_finite(result.history, "mean_episode_log_return"),
        "final_entropy": last["entropy"],
    }


def _train_multiagent(
    cfg: RLTrainConfig, data: MarketArrays, train: MarketArrays, device: torch.device,
    on_update: UpdateHook | None,
) -> TrainResult:  # fmt: skip
    from cappuccino.training.rl.multiagent_run import train_multiagent

    assert cfg.mappo is not None
    path, result, _ = train_multiagent(
        cfg, train, device, reporter=lambda scaler: _reporter(cfg, scaler, on_update)
    )
    period = {k: train.describe()[k] for k in ("start", "end", "n_bars")}
    summary = {**_summary(path, period, result, device), "stage": cfg.mappo.stage,
               "critic": cfg.mappo.critic}  # fmt: skip
    return TrainResult(bundle=path, data=data, train=train, summary=summary)
