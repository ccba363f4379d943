"""``load_policy(path)``: a bundle directory (RL policy, RL ensemble or multi-agent policy) as
a policy plus what running it needs (symbols, feature set, timeframe, market rules, training period)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cappuccino.bundles.ensemble import is_ensemble, load_rl_members
from cappuccino.bundles.io import read_meta_any
from cappuccino.bundles.mappo import FORMAT as MAPPO_FORMAT
from cappuccino.bundles.mappo import load_bundle as load_mappo_bundle
from cappuccino.bundles.rl import FORMAT as RL_FORMAT
from cappuccino.bundles.rl import RLBundle
from cappuccino.bundles.rl import load_bundle as load_rl_bundle
from cappuccino.bundles.supervised import FORMAT as SUPERVISED_FORMAT
from cappuccino.market import MarketRules
from cappuccino.policies import EnsemblePolicy, Policy


@dataclass(frozen=True)
class PolicyBundle:
    """A loaded policy and the data it must run on."""

    path: Path
    kind: str  # "rl", "rl-ensemble" or "mappo"
    policy: Policy
    symbols: tuple[str, ...]
    feature_set: str
    timeframe: str
    rules: MarketRules
    train_period: dict[str, Any] | None

    @classmethod
    def from_rl(cls, b: RLBundle, name: str = "policy") -> PolicyBundle:
        """A loaded RL bundle's policy."""
        return cls(
            path=b.path, kind="rl", policy=b.as_policy(name), symbols=b.symbols,
            feature_set=b.feature_set, timeframe=b.timeframe, rules=b.rules,
            train_period=b.manifest.train_period.model_dump(mode="json"),
        )  # fmt: skip


def load_policy(
    path: Path | str, name: str | None = None, *, allow_version_mismatch: bool = False
) -> PolicyBundle:
    """Load ``path`` as a policy, every file verified; ``ValueError`` naming the file when
    it is not one or fails a check (``allow_version_mismatch``: accept bundles written with
    other library versions)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path}: not a bundle directory")
    if is_ensemble(path):
        members = load_rl_members(path, allow_version_mismatch=allow_version_mismatch)
        first = members[0]
        for m in members[1:]:
            if (m.symbols, m.feature_set, m.timeframe) != (
                first.symbols, first.feature_set, first.timeframe,
            ):  # fmt: skip
                raise ValueError(
                    f"{m.path}: ensemble members differ in symbols, feature set or timeframe"
                )
        policy = EnsemblePolicy(
            [m.as_policy(f"member{i}") for i, m in enumerate(members)], name or "ensemble"
        )
        return PolicyBundle(
            path=path, kind="rl-ensemble", policy=policy, symbols=first.symbols,
            feature_set=first.feature_set, timeframe=first.timeframe, rules=first.rules,
            train_period=first.manifest.train_period.model_dump(mode="json"),
        )  # fmt: skip
    fmt = read_meta_any(path).get("format")
    if fmt == SUPERVISED_FORMAT:
        raise ValueError(
            f"{path}: a supervised model bundle; trade its signals with `cappuccino train` "
            "(backtest section) or score it with `cappuccino predict`"
        )
    if fmt == MAPPO_FORMAT:
        ma = load_mappo_bundle(path, allow_version_mismatch=allow_version_mismatch)
        return PolicyBundle(
            path=path, kind="mappo", policy=ma.as_policy(name or "policy"), symbols=ma.symbols,
            feature_set=ma.feature_set, timeframe=ma.timeframe, rules=ma.rules,
            train_period=ma.manifest.train_period.model_dump(mode="json"),
        )  # fmt: skip
    if fmt != RL_FORMAT:
        raise ValueError(
            f"{path}/bundle.json: format {fmt!r}, expected {RL_FORMAT!r} or {MAPPO_FORMAT!r}"
        )
    rl = load_rl_bundle(path, allow_version_mismatch=allow_version_mismatch)
    return PolicyBundle.from_rl(rl, name or "policy")
