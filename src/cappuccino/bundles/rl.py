"""Self-describing RL policy bundles: a directory anyone can load without the training run.

Layout::

    BUNDLE/
      policy.pt      state dict (torch.save; loaded with weights_only=True)
      bundle.json    format, policy constructor args, env settings, market rules,
                     feature set + names, symbol order, timeframe, scaler, training
                     period, resolved config, library versions, git commit
      history.json   one row per PPO update

Loading checks the data it will run on: same symbols in the same order, same
feature set and feature names, same timeframe; any mismatch is a ``ValueError``
naming the field and both values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cappuccino.bundles.io import (
    read_meta,
    read_state_dict,
    write_history,
    write_state_dict,
)
from cappuccino.config.rl import EnvSettings
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules
from cappuccino.models.actor_critic import ActorCritic
from cappuccino.policies import NetPolicy
from cappuccino.utils.io import atomic_write_json
from cappuccino.utils.provenance import git_commit, library_versions

FORMAT = "cappuccino.rl-bundle/1"


@dataclass(frozen=True)
class RLBundle:
    """A loaded bundle: the policy (eval mode, CPU) and everything needed to run it."""

    path: Path
    policy: ActorCritic
    env_settings: EnvSettings
    rules: MarketRules
    scaler: Scaler
    symbols: tuple[str, ...]
    feature_set: str
    feature_names: tuple[str, ...]
    timeframe: str
    meta: dict[str, Any]

    def as_policy(self, name: str = "policy") -> NetPolicy:
        """The bundle's network as a policy; binding it checks the data (:meth:`check_data`)."""
        return NetPolicy(
            self.policy, settings=self.env_settings, scaler=self.scaler, name=name,
            check=self.check_data,
        )  # fmt: skip

    def check_data(self, data: MarketArrays) -> None:
        """Raise ``ValueError`` naming the first field where ``data`` differs from training."""
        pairs = [
            ("symbols (in order)", list(self.symbols), list(data.symbols)),
            ("feature_set", self.feature_set, data.feature_set),
            ("feature_names", list(self.feature_names), list(data.feature_names)),
            ("timeframe", self.timeframe, data.timeframe.label),
        ]
        for name, want, got in pairs:
            if want != got:
                raise ValueError(
                    f"bundle {self.path}: {name} is {want!r} in the bundle, {got!r} in the data"
                )


def save_bundle(
    path: Path,
    policy: ActorCritic,
    *,
    data: MarketArrays,
    env_settings: EnvSettings,
    rules: MarketRules,
    scaler: Scaler,
    config: dict[str, Any],
    history: list[dict[str, float]],
    train_period: dict[str, Any],
    pretrained_encoder: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle directory atomically file by file; returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    write_state_dict(path / "policy.pt", policy)
    meta = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        "policy": policy.config(),
        "env": env_settings.model_dump(mode="json"),
        "market": rules.to_dict(),
        "symbols": list(data.symbols),
        "feature_set": data.feature_set,
        "feature_names": list(data.feature_names),
        "timeframe": data.timeframe.label,
        "scaler": scaler.to_dict(),
        "train_period": train_period,
        "pretrained_encoder": pretrained_encoder,
        "config": config,
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    atomic_write_json(path / "bundle.json", meta)
    write_history(path / "history.json", history)  # null where no episode ended
    return path


def load_bundle(path: Path) -> RLBundle:
    """Load and validate a bundle directory (see the module docstring)."""
    meta = read_meta(path, FORMAT, "policy bundle")
    policy = ActorCritic(**meta["policy"])
    policy.load_state_dict(read_state_dict(Path(path) / "policy.pt"))
    policy.eval()
    return RLBundle(
        path=Path(path),
        policy=policy,
        env_settings=EnvSettings.model_validate(meta["env"]),
        rules=MarketRules.from_dict(meta["market"]),
        scaler=Scaler.from_dict(meta["scaler"]),
        symbols=tuple(meta["symbols"]),
        feature_set=meta["feature_set"],
        feature_names=tuple(meta["feature_names"]),
        timeframe=meta["timeframe"],
        meta=meta,
    )
