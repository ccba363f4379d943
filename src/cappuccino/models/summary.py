"""A model's summary for every training run: its layers, the input and output shapes of one
batch, and the parameter counts per module, as torchinfo prints them (torchinfo is the
maintained successor of ``torchsummary``: it walks the modules with forward hooks, so the
shapes are the ones a real batch produces, and it counts shared parameters once).

The pass runs under ``torch.no_grad`` in eval mode on a copy of the batch: it changes no
weight, buffer or random state, so calling it after training leaves every result as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from cappuccino.utils.io import atomic_write_bytes

COLUMNS = ("input_size", "output_size", "num_params", "trainable")


class _Heads(nn.Module):
    """An actor-critic's two heads as one forward (``mean`` and ``value`` of an observation)."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return self.policy.mean(obs), self.policy.value(obs)  # type: ignore[operator]


def model_summary(model: nn.Module, inputs: Sequence[Tensor], depth: int = 6) -> str:
    """The summary table of ``model`` on one batch ``inputs`` (its forward's arguments). A
    model without ``forward`` but with ``mean`` and ``value`` (the PPO actor-critic) is
    summarised through both heads."""
    import torchinfo

    net: nn.Module = model
    if type(model).forward is nn.Module.forward and hasattr(model, "mean"):
        net = _Heads(model)
    was_training = model.training
    try:
        stats = torchinfo.summary(net, input_data=list(inputs), depth=depth, col_names=COLUMNS,
                                  mode="eval", verbose=0, device=inputs[0].device)  # fmt: skip
    finally:
        model.train(was_training)
    return str(stats)


def write_model_summary(model: nn.Module, inputs: Sequence[Tensor], path: Path) -> Path:
    """:func:`model_summary` written to ``path`` (atomic)."""
    with torch.random.fork_rng(devices=[]):
        text = model_summary(model, inputs)
    atomic_write_bytes(Path(path), (text + "\n").encode())
    return Path(path)
