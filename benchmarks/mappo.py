"""Multi-agent PPO at scale: MAPPO against single-agent PPO on the same data.

Universes: the bundled 7 pairs, the real 25 Binance pairs of ``../shared/data`` (aligned
on the bars every pair has), and a synthetic 143-symbol universe generated here (the seed
design's size: geometric random-walk closes with per-symbol volatility, standard-normal
features of the same shape as ``cappuccino14``'s 14 columns; throughput does not depend
on what the numbers are). Lookback 10, 64 envs.

Per (algorithm, universe), each in a fresh child process (so its peak memory is its own),
after one warm-up update:

- ``env``: the multi-agent env alone (``MultiAgentTradingEnv.step`` with random scores and
  a random master action, fills through the market core), env steps/s (portfolio steps
  summed over envs);
- ``train``: training, rollout collection plus updates (MAPPO: the symbols stage with its
  centralised critic, and the joint stage, master included; PPO: the MLP actor-critic),
  env steps/s and seconds per update (64 envs x 128 steps, minibatch 512, 4 epochs), with
  the default networks and (``mappo_lean``) a lean per-agent network;
- peak resident memory of the child from after the warm-up (``VmHWM`` reset) to the end,
  MiB; in brackets, its growth over the resident size after the warm-up update (small:
  the allocator keeps the warm-up's blocks for reuse, see
  :func:`~cappuccino.utils.threads.prepare_allocator`).

Rounds are interleaved across cases, medians reported. Targets: MAPPO with 143 symbols x
64 envs trains at >= 25 % of single-agent PPO's env steps/s at 7 symbols; its peak memory
fits in 4 GB.
Usage: ``python -m benchmarks.mappo [--rounds 3] [--updates 2] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from cappuccino.config.rl import EnvSettings, MAPPOSettings, PPOSettings
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import MarketArrays, build_market_arrays, fit_scaler
from cappuccino.market import MarketRules
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.mappo import build_multiagent, train_mappo
from cappuccino.training.rl.multiagent import MultiAgentTradingEnv
from cappuccino.training.rl.ppo import build_policy, train_ppo
from cappuccino.workflows.compare import reset_peak_rss, rss_mb

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_1h"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "mappo_bench"
TF = Timeframe.parse("1h")
N_ENVS, N_STEPS, MINIBATCH, EPOCHS, LOOKBACK = 64, 128, 512, 4, 10
CASES = [("ppo", 7), ("mappo", 7), ("ppo", 25), ("mappo", 25), ("ppo", 143), ("mappo", 143),
         ("mappo_lean", 143)]  # fmt: skip
# the defaults (encoder [64], actor [64, 64], critic [128, 128], embedding 8), and a lean
# per-agent network for wide universes: every agent-row of every minibatch pays for it
SETTINGS = {
    "mappo": (MAPPOSettings(), [64]),
    "mappo_lean": (MAPPOSettings(actor_hidden=[32], critic_hidden=[32, 32], symbol_embedding=4),
                   [16]),
}  # fmt: skip


def real25() -> MarketArrays:
    """The 25 real pairs with ``cappuccino14`` features (the frame cached as Parquet)."""
    cached = CACHE / "binance25_1h.parquet"
    if not cached.is_file():
        from cappuccino.data.importing import import_files
        from cappuccino.data.store import ParquetStore

        store = ParquetStore(CACHE / "store")
        import_files(sorted(SHARED.glob("Binance_*_1h.csv")), store)
        CACHE.mkdir(parents=True, exist_ok=True)
        store.read(TF).write_parquet(cached)
    return build_market_arrays(pl.read_parquet(cached), "cappuccino14", TF)


def synthetic(n_symbols: int, n_bars: int = 4000, seed: int = 0) -> MarketArrays:
    """Random-walk closes (hourly volatility 0.5 % to 2 % per symbol) and standard-normal
    features, 14 per symbol (labelled ``cappuccino14``, whose shape they have)."""
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.005, 0.02, n_symbols)
    logp = np.cumsum(rng.normal(0.0, 1.0, (n_bars, n_symbols)) * vol, axis=0) + np.log(100.0)
    close = np.exp(logp)
    opens = np.vstack([close[:1], close[:-1]])
    names = tuple(f"f{i}" for i in range(14))
    return MarketArrays(
        timestamps=1_600_000_000_000 + np.arange(n_bars, dtype=np.int64) * TF.ms,
        symbols=tuple(f"S{i:03d}/USDT" for i in range(n_symbols)), feature_set="cappuccino14",
        feature_names=names, timeframe=TF, open=opens, close=close,
        features=rng.normal(0.0, 1.0, (n_bars, n_symbols, len(names))),
        filled=np.zeros((n_bars, n_symbols), dtype=bool),
    )  # fmt: skip


def universe(n: int) -> MarketArrays:
    if n == 7:
        return build_market_arrays(pl.read_parquet(sample_path()), "cappuccino14", TF)
    if n == 25:
        return real25()
    return synthetic(n)


def _env(data: MarketArrays) -> BatchedTradingEnv:
    return BatchedTradingEnv(
        data, settings=EnvSettings(lookback=LOOKBACK, episode_bars=720), rules=MarketRules(),
        n_envs=N_ENVS, scaler=fit_scaler(data), seed=0,
    )  # fmt: skip


def _ppo(updates: int) -> PPOSettings:
    return PPOSettings(
        total_timesteps=N_ENVS * N_STEPS * updates, n_envs=N_ENVS, n_steps=N_STEPS,
        minibatch_size=MINIBATCH, n_epochs=EPOCHS, hidden_sizes=[64, 64],
    )  # fmt: skip


def env_rate(algo: str, data: MarketArrays, steps: int = 200) -> float:
    """Env steps/s with random actions (multi-agent: scores and a master action)."""
    base = _env(data)
    g = torch.Generator().manual_seed(0)
    a = data.n_assets
    if algo == "ppo":
        base.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(steps):
            base.step(torch.rand(N_ENVS, a, generator=g) * 2 - 1)
        return steps * N_ENVS / (time.perf_counter() - t0)
    env = MultiAgentTradingEnv(base)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        scores = torch.rand(N_ENVS, a, generator=g) * 2 - 1
        master = torch.rand(N_ENVS, 1 + a, generator=g) * 2 - 1
        env.step(scores, master)
    return steps * N_ENVS / (time.perf_counter() - t0)


def one(algo: str, n: int, updates: int) -> dict[str, Any]:
    """The measurements of one case in this process (see the module docstring)."""
    data = universe(n)
    out: dict[str, Any] = {"algo": algo, "symbols": data.n_assets, "bars": data.n_bars}
    out["env_steps_per_s"] = env_rate(algo, data)
    env = _env(data)
    if algo == "ppo":
        policy = build_policy(env, _ppo(updates))
        train_ppo(env, _ppo(1), seed=0, policy=policy)  # warm-up
        out["rss_before_mb"] = rss_mb("VmRSS")
        reset_peak_rss()
        t0 = time.perf_counter()
        train_ppo(env, _ppo(updates), seed=0, policy=policy)
        dt = time.perf_counter() - t0
    else:
        ma = MultiAgentTradingEnv(env)
        settings, hidden = SETTINGS[algo]
        net = build_multiagent(ma, _ppo(updates), settings, {"source": "mlp", "hidden": hidden})
        train_mappo(ma, _ppo(1), settings, seed=0, policy=net)  # warm-up
        out["rss_before_mb"] = rss_mb("VmRSS")
        reset_peak_rss()
        t0 = time.perf_counter()
        train_mappo(ma, _ppo(updates), settings, seed=0, policy=net)
        dt = time.perf_counter() - t0
        # the joint stage: the master trained too (its rollouts sample its action)
        joint = settings.model_copy(update={"stage": "joint"})
        t1 = time.perf_counter()
        train_mappo(ma, _ppo(updates), joint, seed=0, policy=net)
        out["joint_train_steps_per_s"] = N_ENVS * N_STEPS * updates / (time.perf_counter() - t1)
    out["train_steps_per_s"] = N_ENVS * N_STEPS * updates / dt
    out["seconds_per_update"] = dt / updates
    out["peak_rss_mb"] = rss_mb("VmHWM")
    return out


def child(algo: str, n: int, updates: int, threads: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.mappo", "--one", algo, str(n), "--updates",
         str(updates), "--threads", str(threads)],
        capture_output=True, text=True, timeout=1200, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median)")
    ap.add_argument("--updates", type=int, default=2, help="timed updates per case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("ALGO", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.updates)))
        return
    real25()  # build the cache once, outside the timings
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in CASES}
    for _ in range(args.rounds):  # interleaved, so load drift hits every case
        for algo, n in CASES:
            runs[(algo, n)].append(child(algo, n, args.updates, args.threads))
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, CPU, {args.threads} "
        f"threads; {N_ENVS} envs x {N_STEPS} steps, minibatch {MINIBATCH}, {EPOCHS} epochs, "
        f"lookback {LOOKBACK}; median of {args.rounds} rounds, {args.updates} timed updates"
    )
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "algo"}
           for c, rs in runs.items()}  # fmt: skip
    ref = med[("ppo", 7)]["train_steps_per_s"]
    head = (f"{'case':<12} {'bars':>6} {'env steps/s':>12} {'train steps/s':>14} "
            f"{'s/update':>9} {'vs PPO@7':>9} {'joint steps/s':>14} {'peak RSS MiB':>13}")  # fmt: skip
    print(head)
    for (algo, n), m in med.items():
        joint = f"{m['joint_train_steps_per_s']:>14,.0f}" if algo != "ppo" else f"{'':>14}"
        print(
            f"{algo + '@' + str(n):<12} {m['bars']:>6,.0f} {m['env_steps_per_s']:>12,.0f} "
            f"{m['train_steps_per_s']:>14,.0f} {m['seconds_per_update']:>9.2f} "
            f"{m['train_steps_per_s'] / ref:>8.0%} {joint} "
            f"{m['peak_rss_mb']:>6,.0f} ({m['peak_rss_mb'] - m['rss_before_mb']:+,.0f})"
        )
    for algo in ("mappo", "mappo_lean"):
        big = med[(algo, 143)]
        print(
            f"target: {algo}@143 trains at {big['train_steps_per_s'] / ref:.1%} of PPO@7 "
            f"(>= 25 %); peak RSS {big['peak_rss_mb']:,.0f} MiB (< 4096)"
        )


if __name__ == "__main__":
    main()
