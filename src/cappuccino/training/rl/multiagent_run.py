"""``cappuccino rl train`` with a ``mappo`` section: one stage of multi-agent PPO from a
config, its encoder resolved and checked, its parent loaded, its bundle written.

The encoder (``mappo.encoder.source``):

- ``mlp``: from scratch; the observation scaler is fitted on the training period.
- ``supervised``: a ``cappuccino train`` bundle (``lstm_attention``, ``gru_attention``,
  ``cnn_lstm``, ``mlp``): its feature set and names, lookback (the env's), symbols (in
  order) and timeframe must be the run's, and its train and validation periods must end
  by ``split.train_end``; the run observes through its scaler (pooled over symbols, so
  the same centre and scale for each).
- ``ft``: the FT state encoder, from scratch or pretrained (``ft.pretrained``), checked as
  single-agent PPO checks it (:func:`~cappuccino.bundles.encoder.resolve_encoder`).

A stage after ``symbols`` starts from ``mappo.parent`` (a bundle of the previous stage):
its data fields, env settings and critic kind must be the run's, its training period must
end by ``split.train_end``, and the new bundle records the lineage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cappuccino.bundles.encoder import _utc, resolve_encoder
from cappuccino.bundles.manifest import TrainPeriod
from cappuccino.bundles.mappo import MultiAgentBundle, save_bundle
from cappuccino.bundles.mappo import load_bundle as load_mappo
from cappuccino.config.loading import apply_values
from cappuccino.config.rl import RLTrainConfig
from cappuccino.datasets.market import MarketArrays, fit_scaler
from cappuccino.features.scaling import Scaler
from cappuccino.market import ObservationSpec
from cappuccino.models.multiagent import SUPERVISED_ENCODERS, MultiAgentActorCritic
from cappuccino.models.summary import write_model_summary
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.mappo import MAPPOResult, build_multiagent, train_mappo
from cappuccino.training.rl.multiagent import MultiAgentTradingEnv
from cappuccino.training.rl.pretrain import encoder_args

log = logging.getLogger(__name__)


def resolve_supervised(
    path: Path, *, train: MarketArrays, cfg: RLTrainConfig
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Scaler, dict[str, Any]]:
    """The encoder config, its weights (the model's state dict), the bundle's scaler and
    the provenance of the supervised bundle at ``path``, after every check (module
    docstring); ``ValueError`` naming each mismatch."""
    from cappuccino.bundles.supervised import load_bundle as load_supervised

    sb = load_supervised(path)
    meta = sb.meta
    pairs = [
        ("model", meta["model"], f"one of {list(SUPERVISED_ENCODERS)}", meta["model"] in
         SUPERVISED_ENCODERS),
        ("feature_set", meta["feature_set"], train.feature_set, meta["feature_set"] ==
         train.feature_set),
        ("feature_names", meta["feature_names"], list(train.feature_names),
         list(meta["feature_names"]) == list(train.feature_names)),
        ("lookback", meta["lookback"], cfg.env.lookback, meta["lookback"] == cfg.env.lookback),
        ("symbols", meta["symbols"], list(train.symbols), list(meta["symbols"]) ==
         list(train.symbols)),
        ("timeframe", meta["timeframe"], train.timeframe.label, meta["timeframe"] ==
         train.timeframe.label),
    ]  # fmt: skip
    errors = [f"{name} {want!r} in the bundle, {got!r} in the run" for name, want, got, ok
              in pairs if not ok]  # fmt: skip
    splits = meta.get("data", {}).get("splits", {})
    seen = [splits[k]["end"] for k in ("train", "val") if k in splits]
    if not seen:
        errors.append("its data report has no train/val periods")
    elif max(_utc(e) for e in seen) > _utc(cfg.split.train_end):
        errors.append(
            f"trained and validated on bars up to {max(seen)}, after this run's training "
            f"period ends ({cfg.split.train_end.isoformat()}): it has seen bars the run is "
            "tested on"
        )
    if errors:
        raise ValueError(f"supervised encoder {path}: " + "; ".join(errors))
    encoder = {"source": "supervised", "model": meta["model"],
               "model_params": dict(meta["model_params"])}  # fmt: skip
    state = {k: v for k, v in sb.model.state_dict().items()}
    provenance = {"source": "supervised", "path": str(path), "model": meta["model"],
                  "checksum": meta["checksum"], "best_epoch": meta.get("best_epoch")}  # fmt: skip
    # one centre and scale per feature, pooled over symbols: the same values for every symbol
    shape = (train.n_assets, len(train.feature_names))
    scaler = Scaler(kind=sb.scaler.kind, center=np.broadcast_to(sb.scaler.center, shape).copy(),
                    scale=np.broadcast_to(sb.scaler.scale, shape).copy())  # fmt: skip
    return encoder, state, scaler, provenance


def _check_parent(parent: MultiAgentBundle, cfg: RLTrainConfig, train: MarketArrays) -> None:
    assert cfg.mappo is not None
    parent.check_data(train)
    errors = []
    want = {"symbols": "symbols", "master": "symbols", "joint": "master"}[cfg.mappo.stage]
    if parent.manifest.stage not in (want, "joint"):
        errors.append(f"stage {parent.manifest.stage!r}, expected {want!r} (or 'joint')")
    pe = parent.env_settings.model_dump()
    for key, value in cfg.env.model_dump().items():
        if pe.get(key) != value:
            errors.append(f"env.{key} {pe.get(key)!r} in the parent, {value!r} in the run")
    if parent.manifest.mappo.critic != cfg.mappo.critic:
        errors.append(f"critic {parent.manifest.mappo.critic!r} in the parent, "
                      f"{cfg.mappo.critic!r} in the run")  # fmt: skip
    # the network is the parent's: an architecture this config sets must be the parent's
    built = parent.policy.config()
    m = cfg.mappo
    for key in ("actor_hidden", "critic_hidden", "symbol_embedding", "value_norm"):
        if key in m.model_fields_set and getattr(m, key) != built[key]:
            errors.append(f"mappo.{key} {built[key]!r} in the parent, {getattr(m, key)!r} in "
                          "the run (the network is the parent's)")  # fmt: skip
    for key in ("hidden", "cap_hidden", "symbol_embedding"):
        if key in m.master.model_fields_set and getattr(m.master, key) != built["master"][key]:
            errors.append(f"mappo.master.{key} {built['master'][key]!r} in the parent, "
                          f"{getattr(m.master, key)!r} in the run (the network is the parent's)")  # fmt: skip
    end = _utc(parent.manifest.train_period.end)
    if end > _utc(cfg.split.train_end):
        errors.append(f"trained on bars up to {parent.manifest.train_period.end}, after this "
                      f"run's training period ends ({cfg.split.train_end.isoformat()})")  # fmt: skip
    if errors:
        raise ValueError(f"mappo.parent {parent.path}: " + "; ".join(errors))


def prepare_policy(
    cfg: RLTrainConfig, train: MarketArrays
) -> tuple[MultiAgentActorCritic | None, dict[str, Any], Scaler, dict[str, Any] | None,
           list[dict[str, Any]], dict[str, torch.Tensor] | None]:  # fmt: skip
    """``(parent policy or None, encoder config, scaler, encoder provenance, lineage,
    encoder weights to load or None)`` of a run."""
    m = cfg.mappo
    assert m is not None
    if m.parent is not None:
        parent = load_mappo(m.parent)
        _check_parent(parent, cfg, train)
        log.info("stage %s starts from %s (stage %s)", m.stage, parent.path, parent.manifest.stage)
        return (parent.policy, dict(parent.policy.config()["encoder"]), parent.scaler,
                parent.manifest.encoder, parent.lineage(), None)  # fmt: skip
    enc = m.encoder
    if enc.source == "mlp":
        return None, {"source": "mlp", "hidden": enc.hidden}, fit_scaler(train, cfg.env.scaler), \
            None, [], None  # fmt: skip
    if enc.source == "supervised":
        assert enc.bundle is not None
        encoder, state, scaler, prov = resolve_supervised(enc.bundle, train=train, cfg=cfg)
        return None, encoder, scaler, prov, [], state
    assert enc.ft is not None
    spec = ObservationSpec(n_assets=train.n_assets, n_features=len(train.feature_names),
                           lookback=cfg.env.lookback)  # fmt: skip
    encoder = {"source": "ft", "ft": encoder_args(enc.ft, spec)}
    if enc.ft.pretrained is None:
        return None, encoder, fit_scaler(train, cfg.env.scaler), None, [], None
    pe = resolve_encoder(enc.ft, data=train, env=cfg.env, not_after=cfg.split.train_end)
    return (None, encoder, pe.observation_scaler(train, cfg.env.scaler),
            {"source": "ft", **pe.provenance(train.timeframe.label)}, [], pe.state_dict)  # fmt: skip


def new_policy(
    env: MultiAgentTradingEnv,
    cfg: RLTrainConfig,
    encoder: dict[str, Any],
    enc_state: dict[str, torch.Tensor] | None,
) -> MultiAgentActorCritic:
    """The network of ``cfg.mappo`` for ``env``, its encoder loaded with ``enc_state``
    (a supervised model's or a pretrained FT encoder's weights) when given."""
    m = cfg.mappo
    assert m is not None
    policy = build_multiagent(env, cfg.ppo, m, encoder)
    if enc_state is not None:
        target = policy.encoder if m.encoder.source == "supervised" else policy.context
        assert target is not None
        module = getattr(target, "model", target)
        module.load_state_dict(enc_state)
    return policy


def stage_updates(n_updates: int, n_stages: int) -> list[int]:
    """``n_updates`` PPO updates split between ``n_stages`` stages as evenly as whole
    updates allow, the earlier stages taking the remainder."""
    q, r = divmod(n_updates, n_stages)
    return [q + (k < r) for k in range(n_stages)]


def stage_configs(cfg: RLTrainConfig, stages: Sequence[str]) -> list[RLTrainConfig]:
    """``cfg`` (with a ``mappo`` section) as one run per stage of ``stages``, in order:
    stage ``k`` writes to ``cfg.output_dir / f"{k}_{stage}"`` and is the parent of stage
    ``k + 1``; together they train ``cfg.ppo.n_updates`` updates of ``cfg.ppo.batch_size``
    timesteps (:func:`stage_updates`)."""
    assert cfg.mappo is not None
    if cfg.ppo.n_updates < len(stages):
        raise ValueError(
            f"ppo.total_timesteps: got {cfg.ppo.total_timesteps} ({cfg.ppo.n_updates} updates "
            f"of {cfg.ppo.batch_size} timesteps), expected at least one update per stage of "
            f"{list(stages)}"
        )
    base = cfg.model_dump(mode="json")
    out: list[RLTrainConfig] = []
    parent: str | None = None
    counts = stage_updates(cfg.ppo.n_updates, len(stages))
    for k, (stage, updates) in enumerate(zip(stages, counts, strict=True)):
        out_dir = cfg.output_dir / f"{k}_{stage}"
        out.append(RLTrainConfig.model_validate(apply_values(base, {
            "mappo.stage": stage, "mappo.parent": parent,
            "ppo.total_timesteps": updates * cfg.ppo.batch_size, "output_dir": str(out_dir),
        })))  # fmt: skip
        parent = str(out_dir / "bundle")
    return out


def next_stage_policy(policy: MultiAgentActorCritic) -> MultiAgentActorCritic:
    """A fresh copy of ``policy`` (its constructor and weights), as loading its bundle
    gives: what the next stage starts from."""
    fresh = MultiAgentActorCritic(**policy.config()).to(next(policy.parameters()).device)
    fresh.load_state_dict(policy.state_dict())
    return fresh


def train_multiagent(
    cfg: RLTrainConfig,
    train: MarketArrays,
    device: torch.device,
    reporter: Callable[[Scaler], Callable[[dict[str, float], Any], None]] | None = None,
) -> tuple[Path, MAPPOResult, Scaler]:
    """Run one stage per ``cfg`` on the training period ``train``; the bundle goes to
    ``cfg.output_dir / 'bundle'``. ``reporter(scaler)`` gives the per-update hook."""
    m = cfg.mappo
    assert m is not None
    parent_policy, encoder, scaler, provenance, lineage, enc_state = prepare_policy(cfg, train)
    base = BatchedTradingEnv(
        train, settings=cfg.env, rules=cfg.market, n_envs=cfg.ppo.n_envs, scaler=scaler,
        seed=cfg.seed, device=device, compile=cfg.compile,
    )  # fmt: skip
    env = MultiAgentTradingEnv(base, master_reward=m.master.reward)
    if parent_policy is not None:
        policy = parent_policy.to(device)
    else:
        policy = new_policy(env, cfg, encoder, enc_state)
    log.info(
        "MAPPO stage %s (%s critic) on %d bars x %d symbols, %d timesteps on %s",
        m.stage, m.critic, train.n_bars, train.n_assets, cfg.ppo.total_timesteps, device,
    )  # fmt: skip
    on_update = reporter(scaler) if reporter is not None else None
    result = train_mappo(env, cfg.ppo, m, seed=cfg.seed, policy=policy, on_update=on_update)
    period = {k: train.describe()[k] for k in ("start", "end", "n_bars")}
    path = save_bundle(
        cfg.output_dir / "bundle", result.policy, data=train, mappo=m, env_settings=cfg.env,
        rules=cfg.market, scaler=scaler, config=cfg.model_dump(mode="json"),
        history=result.history, train_period=TrainPeriod(**period), encoder=provenance,
        parents=lineage,
    )  # fmt: skip
    obs = torch.zeros(2, policy.obs_dim, device=device)
    tel = torch.zeros(2, policy.spec.d_telemetry, device=device)
    write_model_summary(result.policy, [obs, tel], cfg.output_dir / "model_summary.txt")
    return path, result, scaler
