"""Multi-layer perceptron: the building block for policies and the supervised ``mlp`` model."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``tanh``, ``gelu``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation: got {name!r}, expected one of {sorted(ACTIVATIONS)}"
        ) from None


class MLP(nn.Module):
    """``(batch, in_dim) -> (batch, out_dim)`` (or ``hidden[-1]`` when ``out_dim`` is None).

    Each hidden layer is Linear -> [BatchNorm1d] -> activation -> [Dropout].

    Example:
        >>> MLP(in_dim=8, hidden=[16, 16], out_dim=2)(torch.zeros(4, 8)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        *,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int | None = None,
        activation_name: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim: got {in_dim}, expected >= 1")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden: got {list(hidden)}, expected widths >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: got {dropout}, expected a value in [0, 1)")
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(activation(activation_name))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if out_dim is not None:
            layers.append(nn.Linear(width, out_dim))
            width = out_dim
        self.out_dim = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def orthogonal_init(self, *, hidden_gain: float = math.sqrt(2), last_gain: float = 1.0) -> None:
        """Orthogonal weights, zero biases (PPO practice); ``last_gain`` for the output layer."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        for i, lin in enumerate(linears):
            nn.init.orthogonal_(lin.weight, last_gain if i == len(linears) - 1 else hidden_gain)
            nn.init.zeros_(lin.bias)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["MLP", "activation", "count_parameters"]
