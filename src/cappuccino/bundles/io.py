"""Shared bundle I/O: state dicts written atomically (read back, verified, by
:func:`cappuccino.bundles.manifest.read_weights`), a manifest's raw JSON, strict-JSON
histories."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cappuccino.utils.io import atomic_write_bytes, atomic_write_json


def write_state_dict(path: Path, module: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """``torch.save`` of a module's state dict (or a state dict), on CPU, via temp file +
    rename."""
    state = module.state_dict() if isinstance(module, nn.Module) else module
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_meta_any(path: Path, kind: str = "bundle", name: str = "bundle.json") -> dict[str, Any]:
    """``path/<name>`` as a JSON object, whatever its format; ``ValueError`` naming the file
    when it is missing or not a JSON object."""
    meta_path = Path(path) / name
    if not meta_path.is_file():
        raise ValueError(f"{path}: not a {kind} (no {name})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """One row per epoch/update; NaN (e.g. nothing finished) is written as null."""
    clean = [
        {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}
        for row in history
    ]
    atomic_write_json(path, clean)
