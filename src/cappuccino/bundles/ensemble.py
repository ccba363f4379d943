"""Ensemble bundles (``cappuccino tune best --top K``): a directory holding its members
(copies of the trials' bundles, ``members/0 ..``) and ``ensemble.json``.

A supervised ensemble scores bars by averaging the members' probabilities (each member
through its own features, window and scaler) and signals at the mean of the members'
validation thresholds; an RL ensemble acts with the mean of its members' actions
(:class:`~cappuccino.policies.EnsemblePolicy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from cappuccino.bundles.manifest import Manifest, read_manifest, write_manifest
from cappuccino.bundles.rl import RLBundle
from cappuccino.bundles.rl import load_bundle as load_rl_bundle
from cappuccino.bundles.supervised import SupervisedBundle
from cappuccino.bundles.supervised import load_bundle as load_supervised_bundle
from cappuccino.utils.provenance import git_commit

FORMAT: Final = "cappuccino.ensemble-bundle/2"
META = "ensemble.json"


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    trial: int
    value: float


class EnsembleManifest(Manifest):
    """``ensemble.json``: the members (bundles of their own, verified when loaded)."""

    format: Literal["cappuccino.ensemble-bundle/2"] = FORMAT
    kind: Literal["supervised", "rl"]
    study: str
    metric: str
    members: list[Member]


def is_ensemble(path: Path) -> bool:
    return (Path(path) / META).is_file()


def write_ensemble_meta(
    path: Path, *, kind: str, study: str, metric: str, members: list[dict[str, Any]]
) -> None:
    """``ensemble.json`` for members already copied to ``path/members/<i>``; each member
    row holds its ``trial`` and ``value``."""
    write_manifest(
        Path(path) / META,
        {
            "format": FORMAT,
            "kind": kind,  # supervised: mean probability; rl: mean action
            "study": study,
            "metric": metric,
            "members": [
                {"path": f"members/{i}", "trial": m["trial"], "value": m["value"]}
                for i, m in enumerate(members)
            ],
            "git_commit": git_commit(),
        },
    )


def read_ensemble_meta(
    path: Path, kind: str | None = None, *, allow_version_mismatch: bool = False
) -> EnsembleManifest:
    """``ensemble.json`` after every check of
    :func:`~cappuccino.bundles.manifest.read_manifest`."""
    m, _ = read_manifest(Path(path) / META, EnsembleManifest,
                         allow_version_mismatch=allow_version_mismatch)  # fmt: skip
    if kind is not None and m.kind != kind:
        raise ValueError(f"{path}: a {m.kind} ensemble, expected a {kind} one")
    return m


def load_rl_members(path: Path, *, allow_version_mismatch: bool = False) -> list[RLBundle]:
    m = read_ensemble_meta(path, "rl", allow_version_mismatch=allow_version_mismatch)
    return [load_rl_bundle(Path(path) / x.path, allow_version_mismatch=allow_version_mismatch)
            for x in m.members]  # fmt: skip


def load_supervised_members(
    path: Path, *, allow_version_mismatch: bool = False
) -> list[SupervisedBundle]:
    m = read_ensemble_meta(path, "supervised", allow_version_mismatch=allow_version_mismatch)
    return [load_supervised_bundle(Path(path) / x.path,
                                   allow_version_mismatch=allow_version_mismatch)
            for x in m.members]  # fmt: skip
