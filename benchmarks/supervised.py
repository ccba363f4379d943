"""Supervised training and inference throughput: our index-based windows vs the seed-003 recipe.

Side by side in one process, CPU, the bundled sample (``price_action14``, 14 features,
64-bar windows, forward-return label), train split:

- ``recipe``: seed 003's pipeline: a per-sample ``torch.utils.data.Dataset`` that slices
  each window out of a numpy array and builds tensors in ``__getitem__``, and a
  ``DataLoader(batch_size=32, shuffle=False)``.
- ``cappuccino``: :class:`~cappuccino.datasets.windows.WindowSplit` batches gathered by
  index from one float32 array (no per-sample Python), at the recipe's batch size (32)
  and at the trainer's default (256); the same loss and optimiser step.
- ``compute bound``: forward+backward+step on one pre-built batch of the same size.

Models: ``mlp`` (small: loader-bound) and ``price_action_transformer`` (compute-bound).
Targets: mlp >= 20x the recipe; transformer >= 90 % of the compute bound and never slower
than the recipe. Usage: ``python -m benchmarks.supervised [--threads 2]``.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator

import polars as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.windows import WindowSplit, build_windows
from cappuccino.features.labels import parse_label
from cappuccino.features.sets import get_feature_set
from cappuccino.features.table import build_feature_table
from cappuccino.models.registry import build_model

LOOKBACK = 64


class SeedWindows(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Seed 003's dataset: one window per ``__getitem__``, built from numpy."""

    def __init__(self, split: WindowSplit) -> None:
        self.x = split.x.numpy()
        self.y = split.y.numpy()
        self.asset = split.asset.numpy()
        self.ends = split.ends.numpy()

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = int(self.ends[i])
        window = self.x[e - LOOKBACK + 1 : e + 1]
        return (
            torch.tensor(window, dtype=torch.float32),
            torch.tensor(self.asset[e], dtype=torch.long),
            torch.tensor(self.y[e], dtype=torch.float32),
        )


Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]


def recipe_batches(split: WindowSplit) -> Batches:
    loader = DataLoader(SeedWindows(split), batch_size=32, shuffle=False)
    return lambda: iter(loader)


def our_batches(split: WindowSplit, batch: int) -> Batches:
    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(split.n_windows, generator=torch.Generator().manual_seed(0))
        for s in range(0, split.n_windows, batch):
            yield split.batch(perm[s : s + batch])

    return gen


def bound_batches(split: WindowSplit, batch: int) -> Batches:
    fixed = split.batch(torch.arange(batch))

    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        while True:
            yield fixed

    return gen


def train_rate(model: nn.Module, batches: Batches, samples: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    done, t0 = 0, time.perf_counter()
    while done < samples:
        for x, a, y in batches():
            loss = loss_fn(model(x, a), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            done += y.numel()
            if done >= samples:
                break
    return done / (time.perf_counter() - t0)


@torch.no_grad()
def infer_rate(model: nn.Module, batches: Batches, samples: int) -> float:
    model.eval()
    done, t0 = 0, time.perf_counter()
    while done < samples:
        for x, a, _ in batches():
            model(x, a)
            done += x.shape[0]
            if done >= samples:
                break
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256, help="our batch size (trainer default)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tf = Timeframe.parse("1h")
    bars = pl.read_parquet(sample_path())
    table, _ = build_feature_table(
        bars, "price_action14", [parse_label("forward:h=24,threshold=0.01,fee=0.001")], timeframe=tf
    )
    features = list(get_feature_set("price_action14").columns)
    data = build_windows(
        table, feature_names=features, label="label_buy_24", lookback=LOOKBACK, timeframe=tf
    )
    train = data.splits["train"]
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, CPU, {args.threads} "
        f"threads; {train.n_windows:,} train windows of {LOOKBACK} x {len(features)}"
    )
    for name, n_train, n_infer in (
        ("mlp", 60_000, 120_000),
        ("price_action_transformer", 3_000, 6_000),
    ):
        contenders: dict[str, Batches] = {"recipe, batch 32": recipe_batches(train)}
        for b in (32, args.batch):
            contenders[f"cappuccino, batch {b}"] = our_batches(train, b)
            contenders[f"compute bound, batch {b}"] = bound_batches(train, b)
        rows: dict[str, tuple[float, float]] = {}
        for label, batches in contenders.items():
            torch.manual_seed(0)
            model = build_model(
                name, n_features=len(features), window=LOOKBACK, n_assets=len(data.symbols)
            )
            train_rate(model, batches, 512)  # warm-up
            rows[label] = (train_rate(model, batches, n_train), infer_rate(model, batches, n_infer))
        print(f"{name}:")
        for label, (tr, inf) in rows.items():
            print(f"  {label:<26} train {tr:>9,.0f} samples/s   inference {inf:>10,.0f} samples/s")
        base_t, base_i = rows["recipe, batch 32"]
        for b in (32, args.batch):
            ours_t, ours_i = rows[f"cappuccino, batch {b}"]
            bound_t = rows[f"compute bound, batch {b}"][0]
            print(
                f"  cappuccino batch {b}: {ours_t / base_t:.1f}x the recipe in training, "
                f"{ours_i / base_i:.1f}x in inference, {ours_t / bound_t:.0%} of the compute bound"
            )
    print(
        "targets: mlp >= 20x the recipe; transformer >= 90 % of the bound, never below the recipe"
    )


if __name__ == "__main__":
    main()
