"""The FT-Transformer state encoder against the MLP policy network and the seed's FT actor.

CPU, 2 threads by default, 7 assets x 14 features (``cappuccino14``), lookback 10 and 60:

- ``mlp``: PPO's actor MLP (64, 64, tanh) on the flat observation.
- ``ft``: :class:`~cappuccino.models.ft_transformer.FTStateEncoder` (d_token 32, 2 blocks,
  4 heads, d_out 64) plus a linear action head: one token per (asset, feature).
- ``seed ft``: the seed's design, ``rtdl_revisiting_models.FTTransformer`` with one token
  per scalar of the observation (d_block 64, 2 blocks) and a flatten-and-project head
  over every token (as the seed did); at lookback 60 it is skipped when it would need
  more than a GB of attention per state (at lookback 10 it is timed on a batch of 4).

Per network: parameters, forward+backward ms for a batch of 256, activation memory saved
for backward (bytes of the tensors autograd keeps), and inference latency for one state
(median of 200), and the FLOP bound: the network's matmul and attention FLOPs for
forward+backward (torch's ``FlopCounterMode``) at this machine's fp32 GEMM rate. Targets:
FT <= 2 ms per state at lookback 10 on 2 threads; FT forward+backward within 2x of its
FLOP bound.
Usage: ``python -m benchmarks.ft_encoder [--threads 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cappuccino.market import ObservationSpec
from cappuccino.models.ft_transformer import FTStateEncoder
from cappuccino.models.mlp import MLP

N_ASSETS, N_FEATURES = 7, 14


class FTActor(nn.Module):
    def __init__(self, lookback: int) -> None:
        super().__init__()
        self.enc = FTStateEncoder(n_assets=N_ASSETS, n_features=N_FEATURES, lookback=lookback,
                                  d_token=32, n_blocks=2, n_heads=4, d_out=64)  # fmt: skip
        self.head = nn.Linear(64, N_ASSETS)

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(torch.relu(self.enc(obs)))  # type: ignore[no-any-return]


class SeedFTActor(nn.Module):
    """One token per scalar; every token's output flattened into a linear head."""

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        from rtdl_revisiting_models import FTTransformerBackbone, LinearEmbeddings

        self.embed = LinearEmbeddings(obs_dim, 64)
        self.backbone = FTTransformerBackbone(
            d_out=None, n_blocks=2, d_block=64, attention_n_heads=8, attention_dropout=0.1,
            ffn_d_hidden=None, ffn_d_hidden_multiplier=4 / 3, ffn_dropout=0.1,
            residual_dropout=0.0,
        )  # fmt: skip
        self.blocks = self.backbone.blocks
        self.head = nn.Linear(obs_dim * 64, N_ASSETS)

    def forward(self, obs: Tensor) -> Tensor:
        x = self.embed(obs)
        for block in self.blocks:  # all tokens through every block (no [CLS] shortcut)
            norm = block["attention_normalization"] if "attention_normalization" in block else None  # noqa: SIM401 (ModuleDict)
            h = norm(x) if norm is not None else x
            x = x + block["attention"](h, h)
            x = x + block["ffn"](block["ffn_normalization"](x))
        return self.head(x.flatten(1))  # type: ignore[no-any-return]


def _saved_bytes(net: nn.Module, obs: Tensor) -> int:
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(obs).sum()
    return total


def _ms(fn: Callable[[], None], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(name: str, net: nn.Module, obs_dim: int, batch: int) -> dict[str, object]:
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(batch, obs_dim)

    def train_step() -> None:
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()

    net.train()
    fb = _ms(train_step, 5)
    with FlopCounterMode(display=False) as counter:
        train_step()
    flops = counter.get_total_flops()
    mem = _saved_bytes(net, x)
    net.eval()
    one = torch.randn(1, obs_dim)
    with torch.no_grad():
        lat = _ms(lambda: net(one), 200)
    return {"net": name, "params": params, "fwd+bwd ms": fb, "saved MB": mem / 2**20,
            "latency ms": lat, "gflop": flops / 1e9}  # fmt: skip


def peak_gflops(repeat: int = 20) -> float:
    """This machine's matmul throughput (fp32, square 1024 GEMM, the set thread count):
    the rate the FLOP bound assumes."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    ms = _ms(lambda: torch.mm(a, b), repeat)
    return 2 * 1024**3 / (ms / 1000) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    peak = peak_gflops()
    print(f"threads {a.threads}, batch {a.batch}, {N_ASSETS} assets x {N_FEATURES} features; "
          f"matmul peak {peak:.1f} GFLOP/s (fp32 1024^3 GEMM): the FLOP bound is the "
          "network's matmul and attention FLOPs (torch's FlopCounterMode) at that rate\n")  # fmt: skip
    print(
        "| lookback | net | parameters | fwd+bwd ms (batch) | GFLOP | FLOP bound ms | x bound "
        "| saved for backward MB | latency ms (1 state) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for lookback in (10, 60):
        d = ObservationSpec(n_assets=N_ASSETS, n_features=N_FEATURES, lookback=lookback).dim
        nets: list[tuple[str, nn.Module]] = [
            (
                "mlp (64, 64)",
                MLP(in_dim=d, hidden=(64, 64), out_dim=N_ASSETS, activation_name="tanh"),
            ),
            ("ft encoder", FTActor(lookback)),
        ]
        for name, net in nets:
            r = measure(name, net, d, a.batch)
            bound = float(r["gflop"]) / peak * 1000  # type: ignore[arg-type]
            print(f"| {lookback} | {name} | {r['params']:,} | {r['fwd+bwd ms']:.1f} | "
                  f"{r['gflop']:.3f} | {bound:.1f} | {float(r['fwd+bwd ms']) / bound:.1f}x | "  # type: ignore[arg-type]
                  f"{r['saved MB']:.1f} | {r['latency ms']:.2f} |")  # fmt: skip
        # the seed's design: 8 heads x d^2 attention floats per state; a batch of 256 would
        # need 8 * 256 * d^2 * 4 bytes (7 GB at lookback 10), so it is timed on 4 states
        if lookback == 10:
            r = measure("seed ft (token per scalar), batch 4", SeedFTActor(d), d, 4)
            bound = float(r["gflop"]) / peak * 1000  # type: ignore[arg-type]
            print(f"| {lookback} | {r['net']} | {r['params']:,} | {r['fwd+bwd ms']:.1f} | "
                  f"{r['gflop']:.3f} | {bound:.1f} | {float(r['fwd+bwd ms']) / bound:.1f}x | "  # type: ignore[arg-type]
                  f"{r['saved MB']:.1f} | {r['latency ms']:.2f} |")  # fmt: skip
        else:
            print(f"| {lookback} | seed ft (token per scalar) | not run: {d} tokens, "
                  f"{8 * d * d * 4 / 2**30:.1f} GB of attention per state | | | | | | |")  # fmt: skip


if __name__ == "__main__":
    main()
