"""Scale: the seed system's universe, 143 symbols x 5 years of hourly bars (6.26 M bars).

The bars are the synthetic universe (``cappuccino data synthetic``: seeded geometric random
walks with market regimes, :mod:`cappuccino.data.synthetic`), generated once into
``.cache/bench/synthetic143`` (a store marked synthetic). Each row runs in a fresh child
process, so its peak resident set size (``VmHWM``) is its own:

- ``features``: :func:`~cappuccino.features.compute_features` of ``cappuccino14`` and
  ``nn23`` on the 143 symbols' bars, beside the raw TA-Lib kernels ``cappuccino14`` needs
  (outputs kept) on the same arrays, interleaved, medians. Target: <= 2 s.
- ``epoch``: one epoch of ``mlp`` (its registry defaults, [256, 128, 64] + asset embedding)
  on the pooled dataset: ``nn23`` features, the 24-bar forward-return label, 16-bar
  windows of all 143 symbols with asset ids, chronological 70/15/15 splits. Timed apart:
  store read, feature table, windows, and ``fit(epochs=1)`` (training pass over the train
  split, then scoring train and val, as every epoch does), then scoring test. Beside it the
  compute bound: forward + backward + AdamW step of the same model on one pre-built
  batch, times the epoch's steps. Target: the epoch <= 4 min with peak RSS <= 2.5 GB.
  Peak RSS is reported twice: building the dataset (the float64 feature table of 6.2 M
  rows x 23 features is 1.2 GB by itself), and the epoch's own (``VmHWM`` reset once the
  windows exist and the table is freed).
- ``env``: :class:`~cappuccino.training.rl.env.BatchedTradingEnv` at 143 assets
  (``cappuccino14``, lookback 10) with 1 and 64 envs, random target weights, beside FinRL
  0.3.7's ``CryptoEnv`` on the same arrays; steps/s and peak RSS.

Usage: ``python -m benchmarks.scale [--threads 2] [--only features|epoch|env]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

CACHE = Path(".cache/bench/synthetic143")
N_SYMBOLS, YEARS = 143, 5


def _store() -> Any:
    from cappuccino.data.store import ParquetStore
    from cappuccino.data.synthetic import SyntheticSpec, write_synthetic

    store = ParquetStore(CACHE)
    spec = SyntheticSpec(symbols=N_SYMBOLS, bars=YEARS * 365 * 24, seed=0)
    if store.synthetic != spec.to_dict():
        write_synthetic(store, spec)
    return store


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _bars() -> pl.DataFrame:
    from cappuccino.data.schema import Timeframe

    return _store().read(Timeframe.parse("1h"))


def row_features() -> dict[str, Any]:
    from benchmarks.features import talib_kernels, timed_interleaved
    from cappuccino.features import compute_features

    t0 = time.perf_counter()
    bars = _bars()
    read_s = time.perf_counter() - t0
    arrays = [
        {c: g[c].to_numpy() for c in ("high", "low", "close", "volume")}
        for _, g in bars.group_by("symbol", maintain_order=True)
    ]
    med = timed_interleaved({
        "cappuccino14": (lambda: compute_features(bars, "cappuccino14"), 5),
        "nn23": (lambda: compute_features(bars, "nn23"), 5),
        "talib-kernels (kept)": (lambda: talib_kernels(arrays, keep=True), 5),
    })  # fmt: skip
    return {"rows": bars.height, "read_s": read_s, "seconds": med, "peak_rss_mb": _peak_mb()}


def row_epoch() -> dict[str, Any]:
    from cappuccino.config.supervised import TrainSettings
    from cappuccino.data.schema import Timeframe
    from cappuccino.datasets.windows import build_windows
    from cappuccino.features.labels import parse_label
    from cappuccino.features.sets import get_feature_set
    from cappuccino.features.table import build_feature_table
    from cappuccino.models.registry import build_model
    from cappuccino.training.supervised import evaluate_split, fit, make_loss

    tf = Timeframe.parse("1h")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    bars = _bars()
    times["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table, _ = build_feature_table(bars, "nn23", [parse_label("forward:h=24")], timeframe=tf)
    del bars
    times["feature table"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    names = list(get_feature_set("nn23").columns)
    data = build_windows(table, feature_names=names, label="label_buy_24", lookback=16,
                         timeframe=tf, embargo_bars=24)  # fmt: skip
    del table
    times["windows"] = time.perf_counter() - t0
    windows = {k: s.n_windows for k, s in data.splits.items()}
    prepare_peak = _peak_mb()
    gc.collect()
    time.sleep(12)  # polars' allocator (jemalloc) hands freed pages back after ~10 s
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the epoch's own peak next
    before_fit = _rss_mb()
    torch.manual_seed(0)
    model = build_model("mlp", n_features=len(names), window=16, n_assets=len(data.symbols))
    settings = TrainSettings(epochs=1)
    t0 = time.perf_counter()
    fit(model, data, settings, seed=0)
    times["fit, 1 epoch"] = time.perf_counter() - t0
    test = data.splits["test"]
    loss_fn = make_loss(settings, data.splits["train"])
    t0 = time.perf_counter()
    evaluate_split(model, test, loss_fn, settings.eval_batch_size)
    times["score test"] = time.perf_counter() - t0
    peak = _peak_mb()
    # the compute bound: the same steps on one pre-built batch
    train = data.splits["train"]
    x, a, y = train.batch(torch.arange(settings.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n_steps = -(-train.n_windows // settings.batch_size)
    probe = min(n_steps, 2000)
    t0 = time.perf_counter()
    for _ in range(probe):
        loss = loss_fn(model(x, a), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    bound = (time.perf_counter() - t0) / probe * n_steps
    return {"windows": windows, "symbols": len(data.symbols), "seconds": times,
            "train_steps": n_steps, "compute_bound_train_s": bound, "peak_rss_mb": peak,
            "prepare_peak_rss_mb": prepare_peak, "rss_before_fit_mb": before_fit,
            "x_mb": sum(s.x.numel() * 4 for s in data.splits.values()) / 2**20}  # fmt: skip


def row_env() -> dict[str, Any]:
    from benchmarks._finrl import load_crypto_env
    from benchmarks.env_steps import finrl_stepper, ours_stepper, rates
    from cappuccino.data.schema import Timeframe
    from cappuccino.datasets.market import build_market_arrays

    bars = _bars()
    t0 = time.perf_counter()
    data = build_market_arrays(bars, "cappuccino14", Timeframe.parse("1h"))
    build_s = time.perf_counter() - t0
    del bars
    price = data.close
    tech = data.features.reshape(data.n_bars, -1)
    out = rates({
        "finrl CryptoEnv": (finrl_stepper(load_crypto_env(), price, tech, 10), 20),
        "cappuccino, 1 env": (ours_stepper(data, 10, 1, "cpu", False), 20),
        "cappuccino, 64 envs": (ours_stepper(data, 10, 64, "cpu", False), 4),
    }, rounds=3, seconds=1.5)  # fmt: skip
    return {"assets": data.n_assets, "bars": data.n_bars, "build_s": build_s, "steps_per_s": out,
            "peak_rss_mb": _peak_mb()}  # fmt: skip


ROWS = {"features": row_features, "epoch": row_epoch, "env": row_env}


def child(name: str, threads: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--child", name, "--threads", str(threads)],
        capture_output=True, text=True, timeout=1800, check=False,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"benchmarks.scale {name} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=sorted(ROWS), default=None)
    ap.add_argument("--child", choices=sorted(ROWS), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(ROWS[args.child]()))
        return
    t0 = time.perf_counter()
    _store()
    print(f"python {platform.python_version()}, torch {torch.__version__}, CPU, {args.threads} "
          f"threads; synthetic universe {N_SYMBOLS} symbols x {YEARS} years hourly in {CACHE} "
          f"({time.perf_counter() - t0:.1f} s to generate or check)")  # fmt: skip
    names = [args.only] if args.only else list(ROWS)
    for name in names:
        r = child(name, args.threads)
        if name == "features":
            s = r["seconds"]
            k = s["talib-kernels (kept)"]
            print(f"features, {r['rows']:,} bars: cappuccino14 {s['cappuccino14']:.2f} s "
                  f"({s['cappuccino14'] / k:.2f}x raw TA-Lib kernels, kept: {k:.2f} s), nn23 "
                  f"{s['nn23']:.2f} s; target <= 2 s; peak RSS {r['peak_rss_mb']:,.0f} MiB "
                  f"(store read {r['read_s']:.2f} s)")  # fmt: skip
        elif name == "epoch":
            s = r["seconds"]
            w = r["windows"]
            fit_s = s["fit, 1 epoch"]
            print(f"mlp epoch, {r['symbols']} symbols, windows train {w['train']:,} / val "
                  f"{w['val']:,} / test {w['test']:,} ({sum(w.values()):,}): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in s.items())
                  + f"; target: epoch <= 240 s. Compute bound of the training pass "
                  f"{r['compute_bound_train_s']:.1f} s ({r['train_steps']:,} steps). Peak RSS "
                  f"of the epoch {r['peak_rss_mb']:,.0f} MiB (from {r['rss_before_fit_mb']:,.0f} "
                  f"at its start; target <= 2,560; window arrays {r['x_mb']:,.0f} MiB), of "
                  f"building the dataset {r['prepare_peak_rss_mb']:,.0f} MiB; epoch "
                  f"{'meets' if fit_s <= 240 else 'misses'} the time target")  # fmt: skip
        else:
            s = r["steps_per_s"]
            f = s["finrl CryptoEnv"]
            print(f"env at {r['assets']} assets ({r['bars']:,} bars, arrays built in "
                  f"{r['build_s']:.1f} s): finrl {f:,.0f} steps/s; "
                  + "; ".join(f"{k} {v:,.0f} steps/s ({v / f:.1f}x)" for k, v in s.items()
                              if k != "finrl CryptoEnv")
                  + f"; peak RSS {r['peak_rss_mb']:,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
