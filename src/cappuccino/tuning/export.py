"""``cappuccino tune best``: export a study's best bundle, or an ensemble of its top k
(:mod:`cappuccino.bundles.ensemble`: members copied to ``members/<i>``, ``ensemble.json``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from cappuccino.bundles.ensemble import write_ensemble_meta
from cappuccino.config.tuning import TuneConfig
from cappuccino.tuning.report import study_report


def export_best(cfg: TuneConfig, out: Path, top: int = 1) -> dict[str, Any]:
    """Copy the best trial's bundle to ``out`` (``top=1``) or build an ensemble of the
    ``top`` best; ``out`` appears complete or not at all (built beside it, then renamed)."""
    if top < 1:
        raise ValueError(f"top: got {top}, expected >= 1")
    trials = study_report(cfg, top=top)["top_trials"]
    if len(trials) < top:
        raise ValueError(f"study {cfg.study_name}: {len(trials)} complete trials, {top} asked")
    missing = [t["trial"] for t in trials if not t["bundle"] or not Path(t["bundle"]).is_dir()]
    if missing:
        raise ValueError(f"study {cfg.study_name}: trials {missing} have no bundle on this machine")
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if top == 1:
            shutil.copytree(trials[0]["bundle"], tmp, dirs_exist_ok=True)
        else:
            for i, t in enumerate(trials):
                shutil.copytree(t["bundle"], tmp / "members" / str(i))
            write_ensemble_meta(
                tmp, kind=cfg.kind, study=cfg.study_name, metric=cfg.metric, members=trials
            )
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"out": str(out), "trials": [t["trial"] for t in trials],
            "values": [t["value"] for t in trials], "ensemble": top > 1}  # fmt: skip
