"""Models: plain ``nn.Module`` building blocks and architectures, built through registries."""

from cappuccino.models.mlp import MLP, activation, count_parameters

__all__ = ["MLP", "activation", "count_parameters"]
