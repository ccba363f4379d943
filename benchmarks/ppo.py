"""PPO end to end (rollout collection + updates): in-house PPO vs stable-baselines3 PPO.

Side by side in one process, on the same batched env (sample data, 7 assets,
``cappuccino14``, lookback 10), SB3 through :class:`~cappuccino.training.rl.sb3.SB3VecEnv`.
Both sides use the same network (separate actor and critic MLPs, tanh, orthogonal init,
state-independent log std), the same action distribution (Gaussian, actions clipped to
[-1, 1]: SB3's; ours with ``action_dist=clipped_gaussian``), n_envs, rollout length,
minibatch size and epochs.

Ours runs eager and with ``compile=True`` (env transition and minibatch loss through
``torch.compile``). Also measured: the **pure compute bound**, the same forward/backward passes on pre-built
tensors with no env (rollout forwards of actor and critic per step, then the epochs of
minibatch forward/backward/Adam steps).

Targets: >= 3x SB3 with the 64x64 network at 64 envs; with a 1024-wide network
>= 1.2x SB3 and >= 85 % of the compute bound.

Under load: ours (eager) on both cases with 1 and 2 torch threads, quiet and while one
other CPU-bound process shares the cores (interleaved, medians), in this process
(``OMP_WAIT_POLICY=PASSIVE``, as the ``cappuccino`` command runs) and in a child with the
policy OpenMP picks by itself (spinning). Target: loaded >= 0.5x quiet.
Usage: ``python -m benchmarks.ppo [--threads 2] [--load-only]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass

import polars as pl
import torch
from torch import nn

from benchmarks._load import competing_process, in_child
from cappuccino.config.rl import EnvSettings, PPOSettings
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import MarketArrays, build_market_arrays, fit_scaler
from cappuccino.market import MarketRules
from cappuccino.models.actor_critic import ActorCritic
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.ppo import build_policy, ppo_threads, train_ppo
from cappuccino.utils.threads import torch_threads


@dataclass(frozen=True)
class Case:
    name: str
    width: int
    n_envs: int
    n_steps: int
    minibatch: int
    epochs: int
    updates: int

    @property
    def timesteps(self) -> int:
        return self.n_envs * self.n_steps * self.updates


def make_env(data: MarketArrays, n_envs: int, compile: bool = False) -> BatchedTradingEnv:
    return BatchedTradingEnv(
        data,
        settings=EnvSettings(lookback=10, episode_bars=720),
        rules=MarketRules(),
        n_envs=n_envs,
        scaler=fit_scaler(data),
        seed=0,
        compile=compile,
    )


def settings(c: Case) -> PPOSettings:
    return PPOSettings(
        total_timesteps=c.timesteps,
        n_envs=c.n_envs,
        n_steps=c.n_steps,
        n_epochs=c.epochs,
        minibatch_size=c.minibatch,
        hidden_sizes=[c.width, c.width],
        activation="tanh",
        log_std_init=0.0,
        action_dist="clipped_gaussian",
        lr_schedule="constant",
    )


def time_ours(data: MarketArrays, c: Case, compile: bool) -> float:
    env = make_env(data, c.n_envs, compile)
    one = settings(Case(**{**c.__dict__, "updates": 1}))
    policy = build_policy(env, settings(c))  # built outside the timer, as SB3's model is
    train_ppo(env, one, seed=0, compile=compile, policy=policy)  # warm-up (and compilation)
    t0 = time.perf_counter()
    train_ppo(env, settings(c), seed=0, compile=compile, policy=policy)
    return time.perf_counter() - t0


def time_sb3(data: MarketArrays, c: Case) -> float:
    from stable_baselines3 import PPO

    from cappuccino.training.rl.sb3 import SB3VecEnv

    venv = SB3VecEnv(make_env(data, c.n_envs))
    kw = {
        "n_steps": c.n_steps,
        "batch_size": c.minibatch,
        "n_epochs": c.epochs,
        "seed": 0,
        "device": "cpu",
        "policy_kwargs": {
            "net_arch": {"pi": [c.width, c.width], "vf": [c.width, c.width]},
            "activation_fn": nn.Tanh,
            "log_std_init": 0.0,
        },
    }
    PPO("MlpPolicy", venv, **kw).learn(c.n_envs * c.n_steps)  # warm-up
    model = PPO("MlpPolicy", venv, **kw)
    t0 = time.perf_counter()
    model.learn(c.timesteps)
    return time.perf_counter() - t0


def time_bound(obs_dim: int, n_assets: int, c: Case) -> float:
    """Forward/backward passes alone: per update, n_steps rollout forwards of actor and
    critic on (n_envs, obs_dim), then epochs x minibatches of loss forward/backward/step,
    on the thread counts PPO picks for them (``ppo_threads``)."""
    pol = ActorCritic(
        obs_dim=obs_dim, action_dim=n_assets, hidden_sizes=[c.width, c.width],
        action_dist="clipped_gaussian",
    )  # fmt: skip
    opt = torch.optim.Adam(pol.parameters(), lr=3e-4, eps=1e-5, fused=True)  # as ours
    batch = c.n_envs * c.n_steps
    obs = torch.randn(c.n_steps, c.n_envs, obs_dim)
    flat = obs.reshape(batch, obs_dim)
    u = torch.randn(batch, n_assets)
    target = torch.randn(batch)
    gen = torch.Generator().manual_seed(0)

    rollout_threads, update_threads = ppo_threads(pol, c.minibatch)  # as ours chooses

    def update() -> None:
        with torch.no_grad(), torch_threads(rollout_threads):
            for s in range(c.n_steps):
                pol.sample(obs[s], gen)
        with torch_threads(update_threads):
            epochs()

    def epochs() -> None:
        for _ in range(c.epochs):
            perm = torch.randperm(batch, generator=gen)
            for k in range(batch // c.minibatch):
                idx = perm[k * c.minibatch : (k + 1) * c.minibatch]
                logp, ent, v = pol.evaluate(flat[idx], u[idx])
                loss = (
                    -(logp.exp()).mean() - 0.0 * ent.mean() + 0.5 * ((v - target[idx]) ** 2).mean()
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(pol.parameters(), 0.5)
                opt.step()

    update()  # warm-up
    t0 = time.perf_counter()
    for _ in range(c.updates):
        update()
    return time.perf_counter() - t0


def load_rows(data: MarketArrays, cases: list[Case], rounds: int) -> None:
    """Ours (eager), quiet vs one competing CPU-bound process, 1 and 2 threads."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    for c in cases:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            quiet, loaded = [], []
            for _ in range(rounds):  # interleaved
                quiet.append(time_ours(data, c, False))
                with competing_process():
                    loaded.append(time_ours(data, c, False))
            q, lo = c.timesteps / statistics.median(quiet), c.timesteps / statistics.median(loaded)
            print(
                f"  {c.name.split(',')[0].split(' (')[0]:<9} OMP_WAIT_POLICY={policy:<8} {threads} "
                f"thread(s): quiet {q:>8,.0f}  with one competing CPU-bound process {lo:>8,.0f} "
                f"env steps/s  ({lo / q:.2f}x)"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled rows")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median)")
    ap.add_argument("--load-only", action="store_true", help="only the under-load rows")
    ap.add_argument("--no-load", action="store_true", help="skip the under-load rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = build_market_arrays(
        pl.read_parquet(sample_path()), "cappuccino14", Timeframe.parse("1h")
    )
    obs_dim = make_env(data, 1).obs_dim
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, CPU, {args.threads} "
        f"threads; obs {obs_dim} floats, 7 assets"
    )
    cases = [
        Case(
            "64x64, SB3 defaults: minibatch 64, 10 epochs (overhead-bound)", 64, 64, 32, 64, 10, 2
        ),
        Case("1024x1024 (compute-bound)", 1024, 64, 64, 1024, 4, 2),
    ]
    if args.load_only:
        load_rows(data, cases, args.rounds)
        return
    for c in cases:
        modes = [False] if args.no_compile else [False, True]
        runs: dict[str, list[float]] = {"sb3": [], "sb3_1": [], "bound": [],
                                        **{f"ours{m}": [] for m in modes}}  # fmt: skip
        for _ in range(args.rounds):  # interleaved, so load drift hits every contender
            runs["sb3"].append(time_sb3(data, c))
            with torch_threads(1):  # the peer on the thread count that suits small ops too
                runs["sb3_1"].append(time_sb3(data, c))
            runs["bound"].append(time_bound(obs_dim, 7, c))
            for m in modes:
                runs[f"ours{m}"].append(time_ours(data, c, m))
        sb3, bound = statistics.median(runs["sb3"]), statistics.median(runs["bound"])
        print(
            f"{c.name}: {c.n_envs} envs x {c.n_steps} steps, minibatch {c.minibatch}, "
            f"{c.epochs} epochs, {c.updates} updates ({c.timesteps:,} env steps); "
            f"median of {args.rounds} rounds"
        )
        sb3_1 = statistics.median(runs["sb3_1"])
        print(f"  sb3                   {c.timesteps / sb3:>10,.0f} env steps/s")
        print(f"  sb3, 1 thread         {c.timesteps / sb3_1:>10,.0f} env steps/s")
        print(f"  compute bound         {c.timesteps / bound:>10,.0f} env steps/s")
        for m in modes:
            ours = statistics.median(runs[f"ours{m}"])
            label = "cappuccino (compiled)" if m else "cappuccino (eager)   "
            print(
                f"  {label} {c.timesteps / ours:>10,.0f} env steps/s   {sb3 / ours:.2f}x sb3 "
                f"({min(sb3, sb3_1) / ours:.2f}x its faster thread count), "
                f"{bound / ours:.0%} of the compute bound"
            )
    print("targets: 64x64 >= 3x sb3; 1024-wide >= 1.2x sb3 and >= 85 % of the compute bound")
    if args.no_load:
        return
    print("under load (target: loaded >= 0.5x quiet):")
    load_rows(data, cases, args.rounds)
    child = in_child("benchmarks.ppo", "--load-only", "--rounds", str(args.rounds),
                     env={"OMP_WAIT_POLICY": "ACTIVE"})  # fmt: skip
    print(child, end="")


if __name__ == "__main__":
    main()
