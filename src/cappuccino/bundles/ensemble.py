"""Ensemble bundles (``cappuccino tune best --top K``): a directory holding its members
(copies of the trials' bundles, ``members/0 ..``) and ``ensemble.json``.

A supervised ensemble scores bars by averaging the members' probabilities (each member
through its own features, window and scaler) and signals at the mean of the members'
validation thresholds; an RL ensemble acts with the mean of its members' actions
(:class:`~cappuccino.policies.EnsemblePolicy`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cappuccino.bundles.rl import RLBundle
from cappuccino.bundles.rl import load_bundle as load_rl_bundle
from cappuccino.bundles.supervised import SupervisedBundle
from cappuccino.bundles.supervised import load_bundle as load_supervised_bundle
from cappuccino.policies import EnsemblePolicy
from cappuccino.utils.io import atomic_write_json

FORMAT = "cappuccino.ensemble-bundle/1"
META = "ensemble.json"


def is_ensemble(path: Path) -> bool:
    return (Path(path) / META).is_file()


def write_ensemble_meta(
    path: Path, *, kind: str, study: str, metric: str, members: list[dict[str, Any]]
) -> None:
    """``ensemble.json`` for members already copied to ``path/members/<i>``; each member
    row holds its ``trial`` and ``value``."""
    atomic_write_json(
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
        },
    )


def read_ensemble_meta(path: Path, kind: str | None = None) -> dict[str, Any]:
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise ValueError(f"{path}: not an ensemble bundle (no {META})")
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"{path}: a {meta.get('kind')} ensemble, expected a {kind} one")
    return meta


def load_rl_members(path: Path) -> list[RLBundle]:
    meta = read_ensemble_meta(path, "rl")
    return [load_rl_bundle(Path(path) / m["path"]) for m in meta["members"]]


def load_rl_ensemble(path: Path, name: str = "ensemble") -> EnsemblePolicy:
    """The mean-action policy of an RL ensemble."""
    return EnsemblePolicy([m.as_policy(f"member{i}") for i, m in
                           enumerate(load_rl_members(path))], name)  # fmt: skip


def load_supervised_members(path: Path) -> list[SupervisedBundle]:
    meta = read_ensemble_meta(path, "supervised")
    return [load_supervised_bundle(Path(path) / m["path"]) for m in meta["members"]]
