"""Load a config from YAML (or defaults) and apply ``a.b.c=value`` overrides, then validate."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def apply_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted ``key.path`` of ``values`` set (parents copied, or
    created when missing)."""
    out = dict(data)
    for key, value in values.items():
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set nested keys from ``key.path=value`` strings; values are parsed as YAML scalars/lists."""
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override: got {item!r}, expected key.path=value")
        values[key.strip()] = yaml.safe_load(raw)
    return apply_values(data, values)


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
    merged = apply_overrides(data, overrides or [])
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        unknown = [e for e in exc.errors() if e["type"] == "extra_forbidden"]
        if not unknown:
            raise
        where = f"{path}: " if path is not None else ""
        hints = [_unknown_key_hint(model, tuple(e["loc"])) for e in unknown]
        raise ValueError(where + "; ".join(hints)) from exc


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) accepted at ``loc`` (the parent path of a key)."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            field = next((f for f in current.model_fields.values() if f.alias == part), None)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        current = ann
    names = list(current.model_fields)
    names += [f.alias for f in current.model_fields.values() if f.alias]
    return names


def _unknown_key_hint(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    key = ".".join(str(x) for x in loc)
    close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1, cutoff=0.6)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
