"""Multi-agent policy bundles (``cappuccino rl train`` with a ``mappo`` section): one per
stage, each recording its parents.

Layout::

    BUNDLE/
      policy.pt      state dict of the MultiAgentActorCritic (weights_only load), value
                     normalisers included
      bundle.json    the typed manifest (:class:`MultiAgentManifest`): network constructor
                     args, stage and whether the master acts, env settings, market rules,
                     feature set + names + code hash, symbol order, timeframe, scaler,
                     training period, the encoder's provenance (a supervised bundle's or a
                     pretrained FT encoder's path and checksum), the parent bundles (path,
                     stage, manifest checksum; oldest first), resolved config, versions,
                     the weights' SHA-256 and the manifest's own checksum
      history.json   one row per update

Loading verifies all of it (:mod:`cappuccino.bundles.manifest`); binding the policy to
data checks symbols, features and timeframe as an RL bundle does.
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
from cappuccino.bundles.rl import check_fitted_data
from cappuccino.config.rl import EnvSettings, MAPPOSettings
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.market import MarketRules
from cappuccino.models.multiagent import MultiAgentActorCritic
from cappuccino.policies import MultiAgentPolicy

FORMAT: Final = "cappuccino.mappo-bundle/1"
WEIGHTS = "policy.pt"


class MultiAgentManifest(FittedManifest):
    """``bundle.json`` of a multi-agent policy bundle."""

    format: Literal["cappuccino.mappo-bundle/1"] = FORMAT
    created: str
    policy: dict[str, Any]
    stage: Literal["symbols", "master", "joint"]
    use_master: bool
    mappo: MAPPOSettings
    env: EnvSettings
    market: MarketRules
    train_period: TrainPeriod
    encoder: dict[str, Any] | None
    parents: list[dict[str, Any]]
    config: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> MultiAgentManifest:
        self.check_policy_files(WEIGHTS)
        want = {"n_symbols": len(self.symbols), "n_features": len(self.feature_names),
                "lookback": self.env.lookback}  # fmt: skip
        for key, value in want.items():
            if self.policy.get(key) != value:
                raise ValueError(
                    f"policy.{key}: got {self.policy.get(key)!r}, expected {value} (from the "
                    "symbols, feature names and env.lookback)"
                )
        if self.use_master != (self.stage != "symbols"):
            raise ValueError(f"use_master: got {self.use_master}, stage {self.stage!r} says "
                             f"{self.stage != 'symbols'}")  # fmt: skip
        return self


@dataclass(frozen=True)
class MultiAgentBundle:
    """A loaded bundle: the network (eval mode, CPU) and everything needed to run it."""

    path: Path
    policy: MultiAgentActorCritic
    env_settings: EnvSettings
    rules: MarketRules
    scaler: Scaler
    symbols: tuple[str, ...]
    feature_set: str
    timeframe: str
    manifest: MultiAgentManifest
    meta: dict[str, Any]

    @property
    def checksum(self) -> str:
        return self.manifest.checksum

    def as_policy(self, name: str = "policy") -> MultiAgentPolicy:
        return MultiAgentPolicy(
            self.policy, settings=self.env_settings, scaler=self.scaler, rules=self.rules,
            use_master=self.manifest.use_master, name=name, check=self.check_data,
        )  # fmt: skip

    def check_data(self, data: MarketArrays) -> None:
        check_fitted_data(self.path, self.manifest, data)

    def lineage(self) -> list[dict[str, Any]]:
        """The parents this bundle records and itself: what a child stage records."""
        me = {"path": str(self.path), "stage": self.manifest.stage, "checksum": self.checksum}
        return [*self.manifest.parents, me]


def save_bundle(
    path: Path,
    policy: MultiAgentActorCritic,
    *,
    data: MarketArrays,
    mappo: MAPPOSettings,
    env_settings: EnvSettings,
    rules: MarketRules,
    scaler: Scaler,
    config: dict[str, Any],
    history: list[dict[str, float]],
    train_period: TrainPeriod,
    encoder: dict[str, Any] | None,
    parents: list[dict[str, Any]],
) -> Path:
    """Write a bundle directory atomically file by file; returns ``path``."""
    return write_policy_bundle(
        path, policy, fmt=FORMAT, weights=WEIGHTS, data=data, scaler=scaler,
        train_period=train_period, config=config, history=history,
        fields={"stage": mappo.stage, "use_master": mappo.stage != "symbols",
                "mappo": mappo.model_dump(mode="json"),
                "env": env_settings.model_dump(mode="json"),
                "market": rules.model_dump(mode="json"), "encoder": encoder,
                "parents": parents},
    )  # fmt: skip


def load_bundle(path: Path, *, allow_version_mismatch: bool = False) -> MultiAgentBundle:
    """Load and verify a bundle directory (see the module docstring)."""
    path = Path(path)
    where = path / "bundle.json"
    m, meta = read_manifest(where, MultiAgentManifest,
                            allow_version_mismatch=allow_version_mismatch)  # fmt: skip
    try:
        scaler = Scaler.from_dict(m.scaler)
        policy = MultiAgentActorCritic(**m.policy)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if scaler.center.shape[-1:] != (len(m.feature_names),):
        raise ValueError(
            f"{where}: scaler.shape: got {list(scaler.center.shape)}, expected one centre per "
            f"feature ({len(m.feature_names)}) or per symbol and feature"
        )
    load_weights(policy, path / WEIGHTS)
    policy.eval()
    return MultiAgentBundle(
        path=path, policy=policy, env_settings=m.env, rules=m.market, scaler=scaler,
        symbols=tuple(m.symbols), feature_set=m.feature_set, timeframe=m.timeframe,
        manifest=m, meta=meta,
    )  # fmt: skip
