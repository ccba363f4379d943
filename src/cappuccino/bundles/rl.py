"""Self-describing RL policy bundles: a directory anyone can load without the training run.

Layout::

    BUNDLE/
      policy.pt      state dict (torch.save; loaded with weights_only=True)
      bundle.json    the typed manifest (:class:`RLManifest`): policy constructor args, env
                     settings, market rules, feature set + names + code hash, symbol order,
                     timeframe, scaler, training period, resolved config, library versions,
                     git commit, the weights' SHA-256 and the manifest's own checksum
      history.json   one row per PPO update

Loading verifies the manifest (:mod:`cappuccino.bundles.manifest`) and that its fields
agree with each other and with the weights (the observation width the lookback gives is
the one the policy takes). Binding the policy to data checks the data: same symbols in
the same order, same feature set and feature names, same timeframe; any mismatch is a
``ValueError`` naming the field and both values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import model_validator

from cappuccino.bundles.manifest import (
    FittedManifest,
    TrainPeriod,
    load_weights,
    read_manifest,
    write_policy_bundle,
)
from cappuccino.config.rl import EnvSettings
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules, ObservationSpec
from cappuccino.models.actor_critic import ActorCritic
from cappuccino.policies import NetPolicy

FORMAT: Final = "cappuccino.rl-bundle/2"
WEIGHTS = "policy.pt"


class RLManifest(FittedManifest):
    """``bundle.json`` of an RL policy bundle."""

    format: Literal["cappuccino.rl-bundle/2"] = FORMAT
    created: str
    policy: dict[str, Any]
    env: EnvSettings
    market: MarketRules
    train_period: TrainPeriod
    pretrained_encoder: dict[str, Any] | None
    config: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> RLManifest:
        self.check_policy_files(WEIGHTS)
        spec = ObservationSpec(n_assets=len(self.symbols), n_features=len(self.feature_names),
                               lookback=self.env.lookback)  # fmt: skip
        if self.policy.get("obs_dim") != spec.dim or self.policy.get("action_dim") != spec.n_assets:
            raise ValueError(
                f"lookback {self.env.lookback}, {len(self.symbols)} symbols and "
                f"{len(self.feature_names)} features give {spec.dim}-float observations and "
                f"{spec.n_assets} actions; the policy takes {self.policy.get('obs_dim')} and "
                f"gives {self.policy.get('action_dim')}"
            )
        return self


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
    manifest: RLManifest
    meta: dict[str, Any]

    def as_policy(self, name: str = "policy") -> NetPolicy:
        """The bundle's network as a policy; binding it checks the data (:meth:`check_data`)."""
        return NetPolicy(
            self.policy, settings=self.env_settings, scaler=self.scaler, name=name,
            check=self.check_data,
        )  # fmt: skip

    def check_data(self, data: MarketArrays) -> None:
        """Raise ``ValueError`` naming the first field where ``data`` differs from training."""
        check_fitted_data(self.path, self.manifest, data)


def check_fitted_data(path: Path, manifest: FittedManifest, data: MarketArrays) -> None:
    """Raise ``ValueError`` naming the first field where ``data`` differs from the data the
    bundle at ``path`` was fitted on: symbols in order, feature set and names, timeframe."""
    pairs = [
        ("symbols (in order)", list(manifest.symbols), list(data.symbols)),
        ("feature_set", manifest.feature_set, data.feature_set),
        ("feature_names", list(manifest.feature_names), list(data.feature_names)),
        ("timeframe", manifest.timeframe, data.timeframe.label),
    ]
    for name, want, got in pairs:
        if want != got:
            raise ValueError(
                f"bundle {path}: {name} is {want!r} in the bundle, {got!r} in the data"
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
    train_period: TrainPeriod,
    pretrained_encoder: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle directory atomically file by file; returns ``path``."""
    return write_policy_bundle(
        path, policy, fmt=FORMAT, weights=WEIGHTS, data=data, scaler=scaler,
        train_period=train_period, config=config, history=history,
        fields={"env": env_settings.model_dump(mode="json"),
                "market": rules.model_dump(mode="json"),
                "pretrained_encoder": pretrained_encoder},
    )  # fmt: skip


def load_bundle(path: Path, *, allow_version_mismatch: bool = False) -> RLBundle:
    """Load and verify a bundle directory (see the module docstring)."""
    path = Path(path)
    m, meta = read_manifest(path / "bundle.json", RLManifest,
                            allow_version_mismatch=allow_version_mismatch)  # fmt: skip
    where = path / "bundle.json"
    scaler = _field(where, "scaler", lambda: Scaler.from_dict(m.scaler))
    if scaler.center.shape != (len(m.symbols), len(m.feature_names)):
        raise ValueError(
            f"{where}: scaler.shape: got {list(scaler.center.shape)}, expected "
            f"[{len(m.symbols)}, {len(m.feature_names)}] (symbols, features)"
        )
    policy = _field(where, "policy", lambda: ActorCritic(**m.policy))
    load_weights(policy, path / WEIGHTS)
    policy.eval()
    return RLBundle(
        path=path,
        policy=policy,
        env_settings=m.env,
        rules=m.market,
        scaler=scaler,
        symbols=tuple(m.symbols),
        feature_set=m.feature_set,
        feature_names=tuple(m.feature_names),
        timeframe=m.timeframe,
        manifest=m,
        meta=meta,
    )


def _field(where: Path, name: str, build: Any) -> Any:
    """``build()``, with a ``ValueError`` or ``TypeError`` named after the manifest field."""
    try:
        return build()
    except (ValueError, TypeError) as exc:
        msg = str(exc).removeprefix("scaler.").removeprefix(f"{name}.")
        raise ValueError(f"{where}: {name}: {msg}") from exc
