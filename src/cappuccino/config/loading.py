"""Load a config from YAML (or defaults) and apply ``a.b.c=value`` overrides, then validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set nested keys from ``key.path=value`` strings; values are parsed as YAML scalars/lists."""
    out = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override: got {item!r}, expected key.path=value")
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_config(model: type[M], path: Path | None = None, overrides: list[str] | None = None) -> M:
    """Validate YAML at ``path`` (or the embedded defaults) plus overrides into ``model``."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{path}: expected a mapping at the top level, got {type(loaded).__name__}"
            )
        data = loaded
    return model.model_validate(apply_overrides(data, overrides or []))
