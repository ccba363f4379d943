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
            raise ValueError(f"--set: got {item!r}, expected key.path=value")
        try:
            values[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {key.strip()}: got {raw!r}, expected a YAML value "
                             f"({_yaml_problem(exc)})") from None  # fmt: skip
    return apply_values(data, values)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return str(problem)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error is a ValueError naming ``path:line:column``."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file, expected YAML") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ValueError(f"{where}: YAML syntax error: {_yaml_problem(exc)}") from None


def condense(exc: ValidationError, where: str = "") -> str:
    """A pydantic error as one line: the dotted field, the bad value and what was expected
    (the first error, and how many more)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(x) for x in first["loc"]) or exc.title
    if first["type"] == "value_error":  # our own validators already name value and bound
        msg, got = str(first["msg"]).removeprefix("Value error, "), ""
    else:
        msg = first["msg"][:1].lower() + first["msg"][1:]
        got = f"got {first['input']!r}, " if first["type"] != "missing" and "input" in first else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}{loc}: {got}{msg}{more}"


def load_config(model: type[M], path: Path | None = None, overrides: list[str] | None = None) -> M:
    """Validate YAML at ``path`` (or the embedded defaults) plus overrides into ``model``."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(path)
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
        where = f"{path}: " if path is not None else ""
        unknown = [e for e in exc.errors() if e["type"] == "extra_forbidden"]
        if not unknown:
            raise ValueError(condense(exc, where)) from exc
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
