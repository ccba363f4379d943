"""Backtest throughput: a policy and its benchmarks as one batch vs one loop per policy.

Side by side in one process, CPU, the bundled sample (7 pairs, every bar, ``cappuccino14``
features, lookback 10): an RL network (the default 64x64 actor-critic, untrained) and the
four default benchmarks (cash, buy-and-hold, equal weight every 24 bars, single asset).

- ``one loop per policy``: :func:`~cappuccino.evaluation.backtest.run_backtest` once per
  policy, as the backtester did before (one env each).
- ``one batch``: :func:`~cappuccino.evaluation.backtest.run_backtests` with all five: one
  simulator step per bar for every portfolio.

The results are identical (a test checks it bit for bit); reported: seconds per backtest
(median of interleaved rounds), bars per second, and the ratio.
Usage: ``python -m benchmarks.backtest [--threads 1] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import polars as pl
import torch

from cappuccino.config.rl import EnvSettings
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import build_market_arrays, fit_scaler
from cappuccino.evaluation.backtest import run_backtest, run_backtests
from cappuccino.market import MarketRules, ObservationSpec
from cappuccino.models.actor_critic import ActorCritic
from cappuccino.policies import NetPolicy, benchmark_policy
from cappuccino.workflows.backtest import default_benchmarks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = build_market_arrays(
        pl.read_parquet(sample_path()), "cappuccino14", Timeframe.parse("1h")
    )
    settings = EnvSettings(lookback=10)
    spec = ObservationSpec(n_assets=data.n_assets, n_features=len(data.feature_names),
                           lookback=10)  # fmt: skip
    torch.manual_seed(0)
    net = ActorCritic(obs_dim=spec.dim, action_dim=data.n_assets).eval()
    policies = [NetPolicy(net, settings=settings, scaler=fit_scaler(data)),
                *(benchmark_policy(s, data.symbols) for s in default_benchmarks(data.symbols))]  # fmt: skip
    rules = MarketRules()
    first = settings.lookback - 1
    n_bars = data.n_bars - 1 - first
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, CPU, {args.threads} "
        f"thread(s); {n_bars:,} bars x {data.n_assets} assets, {len(policies)} policies "
        f"(network + {len(policies) - 1} benchmarks); median of {args.rounds} interleaved rounds"
    )
    loops, batch = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for p in policies:
            run_backtest(data, p, rules=rules, first=first)
        loops.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_backtests(data, policies, rules=rules, first=first)
        batch.append(time.perf_counter() - t0)
    lo, ba = statistics.median(loops), statistics.median(batch)
    print(
        f"  one loop per policy   {lo:7.2f} s   {n_bars * len(policies) / lo:>9,.0f} policy-bars/s"
    )
    print(f"  one batch             {ba:7.2f} s   {n_bars * len(policies) / ba:>9,.0f} policy-bars/s"
          f"   {lo / ba:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
