"""Trading-env throughput: env steps per second with random actions.

Side by side in one process on the bundled 7-pair sample, ``cappuccino14`` (14 features):

- ``finrl``: FinRL 0.3.7's published ``CryptoEnv`` (one env, numpy, Python loops over
  assets), loaded from its wheel (see ``_finrl.py``); price array = closes, tech array =
  the same 98 feature columns.
- ``cappuccino``: :class:`~cappuccino.training.rl.env.BatchedTradingEnv` with ``n_envs``
  portfolios stepped as one tensor batch (fills through the market core, fees, minimum
  order, same-step autoreset, observation gather), on CPU (2 threads) or CUDA if present.

Random actions are drawn inside the timed loop on both sides. Reported: steps/s (env
steps summed over envs) and the ratio to FinRL's single env at the same lookback, in
eager mode and with ``compile=True`` (``torch.compile`` of the accounting transition).
Target: >= 60x FinRL at 256 envs, lookback 10. One ``gym.TradingEnv`` (what a single-env
user steps: numpy in, numpy out) against FinRL's env: target >= 1x.

Under load: 256 envs, lookback 10, eager, with 1 and 2 torch threads, quiet and while one
other CPU-bound process shares the cores (interleaved, medians), in this process
(``OMP_WAIT_POLICY=PASSIVE``, what the ``cappuccino`` command runs with) and in a child with
the policy OpenMP picks by itself (spinning). Target: loaded >= 0.5x quiet.
Usage: ``python -m benchmarks.env_steps [--seconds S] [--device cpu|cuda] [--load-only]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import polars as pl
import torch

from benchmarks._finrl import load_crypto_env
from benchmarks._load import competing_process, in_child
from cappuccino.config.rl import EnvSettings
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import build_market_arrays, fit_scaler
from cappuccino.market import MarketRules
from cappuccino.training.rl.env import BatchedTradingEnv


def finrl_stepper(
    env_cls: type, price: np.ndarray, tech: np.ndarray, lookback: int
) -> Callable[[int], int]:
    env = env_cls(config={"price_array": price, "tech_array": tech}, lookback=lookback)
    rng = np.random.default_rng(0)
    env.reset()

    def run(n: int) -> int:
        for _ in range(n):
            _, _, done, _ = env.step(rng.uniform(-1, 1, price.shape[1]))
            if done:
                env.reset()
        return n

    return run


def ours_stepper(
    data, lookback: int, n_envs: int, device: str, compile: bool
) -> Callable[[int], int]:  # type: ignore[no-untyped-def]
    env = BatchedTradingEnv(
        data,
        settings=EnvSettings(lookback=lookback, episode_bars=720),
        rules=MarketRules(),
        n_envs=n_envs,
        scaler=fit_scaler(data),
        device=device,
        compile=compile,
    )
    g = torch.Generator(device=device).manual_seed(0)
    env.reset(seed=0)

    def run(n: int) -> int:
        for _ in range(n):
            env.step(torch.rand(n_envs, data.n_assets, generator=g, device=device) * 2 - 1)
        if device != "cpu":
            torch.cuda.synchronize()
        return n * n_envs

    run(20)  # warm-up (and compilation)
    return run


def gym_stepper(data, lookback: int) -> Callable[[int], int]:  # type: ignore[no-untyped-def]
    """What a single-env user steps: :class:`~cappuccino.training.rl.gym.TradingEnv` (numpy
    action in, numpy observation out, the episode reset by hand)."""
    from cappuccino.training.rl.gym import TradingEnv

    inner = BatchedTradingEnv(
        data, settings=EnvSettings(lookback=lookback, episode_bars=720), rules=MarketRules(),
        n_envs=1, scaler=fit_scaler(data), autoreset=False,
    )  # fmt: skip
    env = TradingEnv(inner)
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def run(n: int) -> int:
        for _ in range(n):
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, data.n_assets).astype(np.float32))
            if term or trunc:
                env.reset()
        return n

    run(20)
    return run


def rates(
    contenders: dict[str, tuple[Callable[[int], int], int]], rounds: int, seconds: float
) -> dict[str, float]:
    """Median env steps/s per contender; rounds interleave contenders so load drift hits all."""
    runs: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, (fn, chunk) in contenders.items():
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                steps += fn(chunk)
            runs[name].append(steps / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in runs.items()}


def load_rows(data, device: str, rounds: int, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Quiet vs one competing CPU-bound process, 256 envs, lookback 10, 1 and 2 threads."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        step = ours_stepper(data, 10, 256, device, False)
        quiet, loaded = [], []
        for _ in range(rounds):  # interleaved
            quiet.append(rates({"q": (step, 8)}, 1, seconds)["q"])
            with competing_process():
                loaded.append(rates({"l": (step, 8)}, 1, seconds)["l"])
        q, lo = statistics.median(quiet), statistics.median(loaded)
        print(
            f"  OMP_WAIT_POLICY={policy:<8} {threads} thread(s): quiet {q:>10,.0f}  with one "
            f"competing CPU-bound process {lo:>10,.0f} steps/s  ({lo / q:.2f}x)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.4, help="time per contender and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--load-only", action="store_true", help="only the under-load rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = build_market_arrays(
        pl.read_parquet(sample_path()), "cappuccino14", Timeframe.parse("1h")
    )
    if args.load_only:
        load_rows(data, args.device, args.rounds, args.seconds)
        return
    price = data.close.astype(np.float32)
    tech = data.features.reshape(data.n_bars, -1).astype(np.float32)
    crypto_env = load_crypto_env()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, device {args.device}, "
        f"{args.threads} threads; {data.n_bars} bars x {data.n_assets} assets x "
        f"{len(data.feature_names)} features; median of {args.rounds} interleaved rounds"
    )
    modes = [False] if args.no_compile else [False, True]
    print(
        f"{'lookback':>8} {'n_envs':>7} {'mode':>8} {'finrl steps/s':>14} {'ours steps/s':>14} {'ratio':>8}"
    )
    for lookback in (1, 10, 60):
        contenders: dict[str, tuple[Callable[[int], int], int]] = {
            "finrl": (finrl_stepper(crypto_env, price, tech, lookback), 100)
        }
        for n_envs in (1, 8, 256, 1024):
            for comp in modes:
                name = f"{n_envs}:{'compiled' if comp else 'eager'}"
                chunk = max(5, 2000 // n_envs)
                contenders[name] = (ours_stepper(data, lookback, n_envs, args.device, comp), chunk)
        r = rates(contenders, args.rounds, args.seconds)
        base = r.pop("finrl")
        for name, rate in r.items():
            n_envs, mode = name.split(":")
            print(
                f"{lookback:>8} {n_envs:>7} {mode:>8} {base:>14,.0f} {rate:>14,.0f} {rate / base:>7.1f}x"
            )
    print("target: >= 60x at lookback 10, 256 envs")
    one = rates({"finrl": (finrl_stepper(crypto_env, price, tech, 10), 100),
                 "gym": (gym_stepper(data, 10), 100)}, args.rounds, args.seconds)  # fmt: skip
    print(f"one gym.TradingEnv (numpy in and out), lookback 10: {one['gym']:,.0f} steps/s vs "
          f"finrl {one['finrl']:,.0f} ({one['gym'] / one['finrl']:.2f}x; target >= 1x)")  # fmt: skip
    print("under load (256 envs, lookback 10, eager; target: loaded >= 0.5x quiet):")
    load_rows(data, args.device, args.rounds, args.seconds)
    # OpenMP fixes its wait policy when torch loads: the spinning default runs in a child
    child = in_child("benchmarks.env_steps", "--load-only", "--device", args.device,
                     "--rounds", str(args.rounds), "--seconds", str(args.seconds),
                     env={"OMP_WAIT_POLICY": "ACTIVE"})  # fmt: skip
    print(child, end="")


if __name__ == "__main__":
    main()
