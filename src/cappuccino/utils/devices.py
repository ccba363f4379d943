"""Device selection: CUDA when available, else CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def default_device(requested: str | None = None) -> torch.device:
    """Return ``requested`` if given, else ``cuda`` when available, else ``cpu``."""
    import torch

    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
