"""Study throughput: pruning against none, and one against two workers on PostgreSQL.

Same process family, CPU, the bundled sample (``nn23``, BTC/USDT and ETH/USDT), ``mlp``
trials through :func:`cappuccino.tuning.tune.tune`:

- **Pruning**: ``--trials`` trials of ``--epochs`` epochs with the same sampler seed, once
  without a pruner and once with the median pruner (3 start-up trials, 2 warm-up epochs).
  Prints the wall time of each, the time saved and the best value each reached (seed 004
  claims 30-50 % saved).
- **Scale**: trials per hour with 1 and 2 local workers on one PostgreSQL study
  (``CAPPUCCINO_TEST_POSTGRES_URL``, e.g. from ``bash .ci/postgres.sh``; the password
  travels as ``CAPPUCCINO_STORAGE_PASSWORD``). Skipped, with a message, without it.

Usage: ``python -m benchmarks.tuning [--trials 12] [--epochs 8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.config.tuning import TuneConfig
from cappuccino.data.sample import sample_path
from cappuccino.tuning.tune import tune

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def _cfg(
    root: Path, name: str, url: str, trials: int, epochs: int, pruner: dict[str, Any]
) -> TuneConfig:
    return TuneConfig.model_validate(
        {
            "study_name": name, "output_dir": str(root / "out"), "storage": {"url": url},
            "n_trials": trials, "metric": "val_pr_auc", "pruner": pruner,
            "space": {"lookback": {"choices": [16]}},
            "supervised": {
                "data": {"store": str(root / "store"), "symbols": SYMBOLS},
                "train": {"epochs": epochs, "early_stopping": {"patience": epochs}},
                "backtest": {"enabled": False}, "tracking_uri": None,
            },
        }
    )  # fmt: skip


def pruning(root: Path, trials: int, epochs: int) -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(SYMBOLS))
    # untimed warm-up: imports, first-call kernels, page cache
    tune(_cfg(root, "warmup", f"sqlite:///{root / 'w.db'}", 1, 1, {"kind": "none"}), bars=bars)
    print(f"\n## Pruning: {trials} mlp trials x {epochs} epochs (BCE), same sampler seed\n")
    print("| metric | study | wall s | saved | best value | trials by state |")
    print("|---|---|---|---|---|---|")
    for metric, direction in (("val_pr_auc", "maximize"), ("val_loss", "minimize")):
        rows = []
        for label, pruner in (
            ("no pruning", {"kind": "none"}),
            ("median pruner", {"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 2}),
        ):
            name = f"{metric}-{label.replace(' ', '_')}"
            cfg = _cfg(root, name, f"sqlite:///{root / 'p.db'}", trials, epochs, pruner)
            space = {**cfg.space, "loss": {"choices": ["bce"]}}  # losses compare only alike
            cfg = cfg.model_copy(update={"metric": metric, "direction": direction, "space": space})
            t0 = time.perf_counter()
            s = tune(cfg, bars=bars)
            rows.append((label, time.perf_counter() - t0, s["best_value"], s["counts"]))
        base = rows[0][1]
        for label, wall, best, counts in rows:
            print(f"| {metric} ({direction}) | {label} | {wall:.1f} | {1 - wall / base:.0%} | "
                  f"{best:.4f} | {counts} |")  # fmt: skip


def scale(root: Path, trials: int, epochs: int) -> None:
    url = os.environ.get("CAPPUCCINO_TEST_POSTGRES_URL")
    if not url:
        print("\n## Scale: skipped (set CAPPUCCINO_TEST_POSTGRES_URL; bash .ci/postgres.sh)")
        return
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)
    env = {**os.environ, "CAPPUCCINO_STORAGE_PASSWORD": u.password or ""}
    bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database).render_as_string()
    rows = []
    for workers in (1, 2):
        name = f"scale-{workers}-{uuid.uuid4().hex[:6]}"
        cmd = [
            sys.executable, "-m", "cappuccino.cli.main", "tune", "--study-name", name,
            "--storage", bare, "--n-trials", str(trials), "--workers", str(workers), "--json",
            "--set", f"supervised.data.store={root / 'store'}",
            "--set", f"supervised.data.symbols={json.dumps(SYMBOLS)}",
            "--set", f"supervised.train.epochs={epochs}", "--set", "supervised.tracking_uri=null",
            "--set", "supervised.backtest.enabled=false", "--set", "pruner.kind=none",
            "--set", f"output_dir={root / 'out'}", "--set", "space.lookback.choices=[16]",
        ]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        doc = json.loads(done.stdout)
        rows.append((workers, wall, doc["finished"], trials / wall * 3600))
    print(
        f"\n## Scale: {trials} mlp trials x {epochs} epochs on PostgreSQL, {os.cpu_count()} cores\n"
    )
    print("| workers | wall s | finished | trials / hour | speed-up |\n|---|---|---|---|---|")
    for workers, wall, finished, rate in rows:
        print(f"| {workers} | {wall:.1f} | {finished} | {rate:.0f} | {rate / rows[0][3]:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--scale-trials", type=int, default=8)
    ap.add_argument("--scale-epochs", type=int, default=3)
    a = ap.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "cappuccino.cli.main", "data", "sample", "--store",
             str(root / "store"), "--json"], check=True, capture_output=True,
        )  # fmt: skip
        pruning(root, a.trials, a.epochs)
        scale(root, a.scale_trials, a.scale_epochs)


if __name__ == "__main__":
    main()
