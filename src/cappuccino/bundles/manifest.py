"""What every bundle manifest shares, and how loading verifies it.

A manifest (``bundle.json``, ``encoder.json``, ``ensemble.json``) is a typed pydantic model
with:

- ``versions``: the library versions it was written with; loading compares them with the
  running ones (an override, ``allow_version_mismatch``, accepts a difference and logs it);
- ``files``: the SHA-256 of every weights file, checked before anything is unpickled;
- ``feature_code``: the hash of the feature set's code (:func:`feature_set_hash`), so a
  bundle whose indicators have changed since training is refused;
- ``checksum``: the SHA-256 of the manifest's own canonical JSON, so an edited manifest
  (a lookback, a symbol order, a scaler value) is refused.

Every failure is a ``ValueError`` of one line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import struct
import zipfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from cappuccino.bundles.io import read_meta_any, write_history, write_state_dict
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.features.sets import feature_set_hash
from cappuccino.utils.io import atomic_write_json
from cappuccino.utils.provenance import git_commit, library_versions

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class Manifest(BaseModel):
    """Fields every manifest has (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    versions: dict[str, str | None] = Field(description="library versions it was written with")
    git_commit: str | None = Field(description="HEAD of the working tree that wrote it")
    files: dict[str, str] = Field(description="SHA-256 of each weights file, by relative path")
    checksum: str = Field(description="SHA-256 of the manifest's canonical JSON without it")


class FittedManifest(Manifest):
    """A manifest of a model fitted on market data: what :func:`data_fields` records."""

    symbols: list[str]
    feature_set: str
    feature_names: list[str]
    feature_code: str = Field(description="feature_set_hash of the set when fitted")
    timeframe: str
    scaler: dict[str, Any]

    def check_policy_files(self, weights: str) -> None:
        """A policy manifest's common checks: ``weights`` is hashed, the symbols distinct."""
        if weights not in self.files:
            raise ValueError(f"files: no hash for {weights}")
        if len(set(self.symbols)) != len(self.symbols) or not self.symbols:
            raise ValueError(f"symbols: got {self.symbols}, expected distinct symbols")


class TrainPeriod(BaseModel):
    """The bars a model was trained on: one shape for every bundle. ``start`` and ``end``
    are the open times (UTC) of the first and last training bar; ``segments`` (CPCV
    trials) lists the contiguous ``[a, b)`` bar ranges of the study's calendar it saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str
    n_bars: int = Field(ge=1)
    segments: list[tuple[int, int]] | None = None
    fold: int | None = None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(meta: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def data_fields(data: MarketArrays, scaler: Scaler) -> dict[str, Any]:
    """What a manifest records of the data a model was fitted on: symbol order, feature set
    and names, the feature code's hash, timeframe and the fitted scaler."""
    return {
        "symbols": list(data.symbols),
        "feature_set": data.feature_set,
        "feature_names": list(data.feature_names),
        "feature_code": feature_set_hash(data.feature_set),
        "timeframe": data.timeframe.label,
        "scaler": scaler.to_dict(),
    }


def write_policy_bundle(
    path: Path,
    policy: nn.Module,
    *,
    fmt: str,
    weights: str,
    fields: Mapping[str, Any],
    data: MarketArrays,
    scaler: Scaler,
    train_period: BaseModel,
    config: dict[str, Any],
    history: list[dict[str, float]],
) -> Path:
    """A trained policy's bundle directory, written atomically file by file: the weights
    (``policy``'s state dict, its constructor arguments ``policy.config()``), ``fields``
    (the kind's own manifest fields), what it was fitted on, the training period, the run
    config, the history (null where no episode ended) and the manifest; returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    write_state_dict(path / weights, policy)
    meta = {
        "format": fmt, "created": datetime.now(UTC).isoformat(),
        "policy": policy.config(),  # type: ignore[operator]
        **fields, **data_fields(data, scaler),
        "train_period": train_period.model_dump(mode="json"), "config": config,
        "git_commit": git_commit(),
    }  # fmt: skip
    write_history(path / "history.json", history)
    write_manifest(path / "bundle.json", meta, [weights])
    return path


def write_manifest(path: Path, meta: dict[str, Any], weights: Iterable[str] = ()) -> None:
    """Write ``meta`` to ``path`` with ``versions``, ``files`` (hashes of ``weights``,
    relative to ``path``'s folder) and ``checksum`` filled in."""
    root = path.parent
    body = {
        **meta,
        "versions": meta.get("versions") or library_versions(),
        "files": {name: sha256_file(root / name) for name in weights},
    }
    body["checksum"] = hashlib.sha256(_canonical(body)).hexdigest()
    atomic_write_json(path, body)


def read_manifest(
    path: Path, model: type[M], *, allow_version_mismatch: bool = False
) -> tuple[M, dict[str, Any]]:
    """Parse, check and verify the manifest at ``path`` as ``model``: the checksum, the
    fields, the weights files' hashes, the library versions and the feature code. Returns
    the typed manifest and the raw JSON object."""
    raw = read_meta_any(path.parent, name=path.name)
    want = model.model_fields["format"].default if "format" in model.model_fields else None
    if want is not None and raw.get("format") != want:
        raise ValueError(f"{path}: format is {raw.get('format')!r}, expected {want!r}")
    if "checksum" not in raw:
        raise ValueError(f"{path}: no checksum (written before bundles were sealed); rebuild it")
    try:
        got = hashlib.sha256(_canonical(raw)).hexdigest()
    except ValueError as exc:  # NaN / Infinity in the file
        raise ValueError(f"{path}: not strict JSON ({exc})") from exc
    if got != raw["checksum"]:
        raise ValueError(
            f"{path}: edited after it was written (its checksum {raw['checksum'][:12]}... does not "
            f"match its content {got[:12]}...); rebuild or re-export the bundle"
        )
    manifest = parse_model(model, raw, path)
    assert isinstance(manifest, Manifest)
    verify_files(path.parent, manifest.files)
    verify_versions(path, manifest.versions, allow=allow_version_mismatch)
    code = getattr(manifest, "feature_code", None)
    if code is not None:
        verify_feature_code(path, str(getattr(manifest, "feature_set")), str(code))  # noqa: B009
    return manifest, raw


def parse_model(model: type[M], data: Any, path: Path) -> M:
    """``model.model_validate(data)`` with the first error condensed to one line naming
    ``path``, the field, the value and what was expected."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        value = repr(e.get("input"))
        value = value if len(value) <= 60 else value[:57] + "..."
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ValueError(f"{path}: {loc}: {e['msg']}, got {value}{more}") from exc


def verify_files(root: Path, files: Mapping[str, str]) -> None:
    for name, want in files.items():
        f = root / name
        if not f.is_file():
            raise ValueError(f"{f}: missing (listed in the manifest)")
        got = sha256_file(f)
        if got != want:
            raise ValueError(
                f"{f}: sha256 {got[:12]}... on disk, {want[:12]}... in the manifest: the file "
                "changed after the bundle was written"
            )


def verify_versions(path: Path, recorded: Mapping[str, str | None], *, allow: bool) -> list[str]:
    """The recorded libraries whose running version differs; an error unless ``allow``."""
    now = library_versions(tuple(k for k in recorded if k != "python"))
    diffs = [f"{k} {v} (now {now.get(k)})" for k, v in recorded.items() if now.get(k) != v]
    if diffs and not allow:
        raise ValueError(
            f"{path}: written with {', '.join(diffs)}; pass --allow-version-mismatch to load it "
            "anyway"
        )
    if diffs:
        log.warning("%s: loaded despite version differences: %s", path, ", ".join(diffs))
    return diffs


def verify_feature_code(path: Path, feature_set: str, recorded: str) -> None:
    now = feature_set_hash(feature_set)
    if now != recorded:
        raise ValueError(
            f"{path}: feature set {feature_set!r} was code {recorded[:12]}... when written, is "
            f"{now[:12]}... now: its indicators changed since training; retrain"
        )


# what torch.load(weights_only=True) raises on a file that is truncated, not a torch file,
# or pickles anything but tensors (its restricted unpickler fails in several ways)
_BAD_WEIGHTS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
                KeyError, IndexError, ValueError, TypeError, AttributeError, struct.error)  # fmt: skip


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors (``weights_only=True``: loading runs no code); a file that is
    truncated, not a torch file, or holds anything but tensors is one ``ValueError``."""
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except _BAD_WEIGHTS as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a loadable state dict ({first[:160]})") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path}: not a state dict of named tensors")
    return state


def load_weights(
    module: nn.Module, path: Path, state: dict[str, torch.Tensor] | None = None
) -> None:
    """``module.load_state_dict`` of ``path`` (or ``state`` read from it); a shape or key
    mismatch (a manifest edited to another architecture) is one ``ValueError``."""
    try:
        module.load_state_dict(read_weights(path) if state is None else state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(
            f"{path}: the weights do not fit the architecture in the manifest ({detail[:200]})"
        ) from exc
