"""``cappuccino tune best``: export a study's best bundle, or an ensemble of its top k.

An ensemble bundle is a directory holding its members (copies of the trials' bundles,
``members/0 ..``) and ``ensemble.json``. A supervised ensemble scores bars by averaging
the members' probabilities (each member through its own features, window and scaler) and
signals at the mean of the members' validation thresholds; an RL ensemble acts with the
mean of its members' actions (:class:`~cappuccino.evaluation.backtest.EnsemblePolicy`,
``cappuccino backtest --policy DIR``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.config.tuning import TuneConfig
from cappuccino.tuning.report import study_report
from cappuccino.utils.io import atomic_write_json

ENSEMBLE_FORMAT = "cappuccino.ensemble-bundle/1"


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
            atomic_write_json(
                tmp / "ensemble.json",
                {
                    "format": ENSEMBLE_FORMAT,
                    "kind": cfg.kind,  # supervised: mean probability; rl: mean action
                    "study": cfg.study_name,
                    "metric": cfg.metric,
                    "members": [
                        {"path": f"members/{i}", "trial": t["trial"], "value": t["value"]}
                        for i, t in enumerate(trials)
                    ],
                },
            )
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"out": str(out), "trials": [t["trial"] for t in trials],
            "values": [t["value"] for t in trials], "ensemble": top > 1}  # fmt: skip


def predict_ensemble(path: Path, bars: pl.DataFrame) -> pl.DataFrame:
    """Mean probability of the members on every (timestamp, symbol) all of them score;
    ``signal`` at the mean of their thresholds."""
    from cappuccino.training.supervised_run import load_bundle, predict

    meta = json.loads((Path(path) / "ensemble.json").read_text())
    if meta.get("format") != ENSEMBLE_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {ENSEMBLE_FORMAT!r}")
    members = [load_bundle(Path(path) / m["path"]) for m in meta["members"]]
    frames = [
        predict(b, bars).select("timestamp", "symbol", pl.col("prob").alias(f"p{i}"))
        for i, b in enumerate(members)
    ]
    joined = frames[0]
    for f in frames[1:]:
        joined = joined.join(f, on=["timestamp", "symbol"], how="inner")
    cols = [f"p{i}" for i in range(len(frames))]
    threshold = sum(float(b.meta["threshold"]) for b in members) / len(members)
    return (
        joined.with_columns(pl.mean_horizontal(cols).alias("prob"))
        .select("timestamp", "symbol", "prob")
        .with_columns((pl.col("prob") >= threshold).alias("signal"))
        .sort(["timestamp", "symbol"])
    )


def load_rl_ensemble(path: Path) -> Any:
    """The :class:`~cappuccino.evaluation.backtest.EnsemblePolicy` of an RL ensemble."""
    from cappuccino.evaluation.backtest import EnsemblePolicy
    from cappuccino.training.rl.bundle import load_bundle

    meta = json.loads((Path(path) / "ensemble.json").read_text())
    if meta.get("format") != ENSEMBLE_FORMAT or meta.get("kind") != "rl":
        raise ValueError(f"{path}: not an RL ensemble ({meta.get('format')}, {meta.get('kind')})")
    return EnsemblePolicy([load_bundle(Path(path) / m["path"]) for m in meta["members"]])
