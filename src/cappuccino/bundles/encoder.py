"""Pretrained FT encoders (``cappuccino rl pretrain-encoder``'s output directory): loading,
and every check that an encoder fits a run.

Layout::

    ENCODER/
      best_encoder.pt    FTStateEncoder state dict, lowest val loss (weights_only load)
      final_encoder.pt   the last epoch's
      encoder.json       constructor arguments, observation settings, symbols, feature
                         names, timeframe, fitted scaler, periods, first and last bar seen,
                         resolved config, versions, git commit
      history.json       one row per epoch
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from torch import Tensor

from cappuccino.bundles.manifest import FittedManifest, read_manifest, read_weights
from cappuccino.config.rl import EnvSettings, FTEncoderSettings, FTPolicySettings
from cappuccino.datasets.market import MarketArrays, fit_scaler
from cappuccino.features.scaling import Scaler

log = logging.getLogger(__name__)

FORMAT: Final = "cappuccino.ft-encoder/2"
META = "encoder.json"


@dataclass(frozen=True)
class PretrainedEncoder:
    """A pretraining run's encoder: its weights, the scaler its inputs were scaled with,
    and its ``encoder.json``."""

    path: Path
    meta: dict[str, Any]
    state_dict: dict[str, Tensor]
    scaler: Scaler
    weights: str

    @property
    def lookback(self) -> int:
        return int(self.meta["env"]["lookback"])

    def provenance(self, timeframe: str | None = None) -> dict[str, Any]:
        """What a policy bundle records about the encoder it started from; ``timeframe``: the
        run's, recorded as a transfer when it is not the encoder's."""
        keys = ("created", "best_epoch", "best_val_loss", "first_bar", "last_bar", "git_commit",
                "timeframe")  # fmt: skip
        out = {"path": str(self.path), "weights": self.weights,
               **{k: self.meta.get(k) for k in keys}}  # fmt: skip
        if timeframe is not None and timeframe != self.meta["timeframe"]:
            out["timeframe_transfer"] = {
                "from": self.meta["timeframe"], "to": timeframe,
                "scaler": "fitted on the run's own training period",
            }  # fmt: skip
        return out

    def observation_scaler(self, train: MarketArrays, kind: str) -> Scaler:
        """The scaler a run starting from this encoder observes through: the encoder's own,
        or, for an encoder of another timeframe (which saw other feature distributions:
        4h volumes are about 4x the hourly ones), one of ``kind`` fitted on the run's
        training period ``train``."""
        if self.meta["timeframe"] == train.timeframe.label:
            return self.scaler
        log.info("timeframe transfer: encoder pretrained on %s, fine-tuned on %s; the "
                 "observation scaler is fitted on the run's training period",
                 self.meta["timeframe"], train.timeframe.label)  # fmt: skip
        return fit_scaler(train, kind)

    def settings(self, **policy: Any) -> FTPolicySettings:
        """``FTPolicySettings`` with this encoder's architecture (the tuning arm uses it so
        nothing sampled is overwritten: the architecture is simply not sampled)."""
        e = self.meta["encoder"]
        return FTPolicySettings(d_token=e["d_token"], n_blocks=e["n_blocks"],
                                n_heads=e["n_heads"], d_out=e["d_out"],
                                pretrained=str(self.path), **policy)  # fmt: skip


class EncoderManifest(FittedManifest):
    """``encoder.json`` of a pretrained encoder."""

    format: Literal["cappuccino.ft-encoder/2"] = FORMAT
    created: str
    encoder: dict[str, Any]
    env: dict[str, Any]
    periods: dict[str, Any]
    first_bar: str
    last_bar: str
    best_epoch: int
    best_val_loss: float
    val_baseline_loss: float
    epochs_run: int
    seconds: float
    device: str
    config: dict[str, Any]


def read_encoder_meta(path: Path) -> dict[str, Any]:
    """``encoder.json`` after every check of :func:`~cappuccino.bundles.manifest.read_manifest`."""
    return read_manifest(Path(path) / META, EncoderManifest)[1]


def load_encoder(path: Path, weights: str = "best") -> PretrainedEncoder:
    if weights not in ("best", "final"):
        raise ValueError(f"pretrained_weights: got {weights!r}, expected 'best' or 'final'")
    meta = read_encoder_meta(path)
    state = read_weights(Path(path) / f"{weights}_encoder.pt")
    try:
        scaler = Scaler.from_dict(meta["scaler"])
    except ValueError as exc:
        raise ValueError(f"{Path(path) / META}: {exc}") from exc
    return PretrainedEncoder(path=Path(path), meta=meta, state_dict=state, scaler=scaler,
                             weights=weights)  # fmt: skip


def compatibility_errors(
    meta: dict[str, Any],
    *,
    data: MarketArrays,
    env: EnvSettings,
    ft: FTEncoderSettings | None,
    check_lookback: bool = True,
    not_after: datetime | None = None,
    tested: Sequence[tuple[datetime, datetime]] = (),
    allow_timeframe_transfer: bool = False,
) -> list[str]:
    """Every way the encoder of ``meta`` does not fit a run, as ``"<field> <value> in
    encoder, <value> in <where>"`` (empty: compatible).

    ``ft`` None (or ``check_lookback`` False) leaves the architecture (the lookback) to the
    encoder, as the tuning arm does. ``not_after``: the last bar the run may have seen
    (its training end); ``tested``: time ranges the run tests on, which the encoder must
    not have seen. ``allow_timeframe_transfer``: an encoder of another timeframe fits
    (``ppo.ft.allow_timeframe_transfer``).
    """
    e, m = meta["encoder"], meta["env"]
    pairs: list[tuple[str, Any, Any, str]] = [
        ("symbols", meta["symbols"], list(data.symbols), "data"),
        ("feature_set", m["feature_set"], data.feature_set, "data"),
        ("feature_names", meta["feature_names"], list(data.feature_names), "data"),
        ("feature_set", m["feature_set"], env.feature_set, "env"),
        ("scaler", m["scaler"], env.scaler, "env"),
        ("obs_clip", m["obs_clip"], env.obs_clip, "env"),
    ]
    if check_lookback:
        pairs.append(("lookback", m["lookback"], env.lookback, "env"))
    if ft is not None:
        pairs += [(k, e[k], getattr(ft, k), "ppo.ft") for k in ("d_token", "n_blocks",
                                                                 "n_heads", "d_out")]  # fmt: skip
    errors = [f"{name} {want!r} in encoder, {got!r} in {where}"
              for name, want, got, where in pairs if want != got]  # fmt: skip
    if meta["timeframe"] != data.timeframe.label and not allow_timeframe_transfer:
        errors.append(
            f"timeframe {meta['timeframe']!r} in encoder, {data.timeframe.label!r} in data "
            "(set ppo.ft.allow_timeframe_transfer: true to fine-tune across timeframes)"
        )
    first, last = _utc(meta["first_bar"]), _utc(meta["last_bar"])
    if not_after is not None and last > _utc(not_after):
        errors.append(
            f"pretrained on bars up to {meta['last_bar']}, after this run's training period "
            f"ends ({_utc(not_after).isoformat()}): it has seen bars the run is tested on"
        )
    for lo, hi in tested:
        if first <= _utc(hi) and _utc(lo) <= last:
            errors.append(
                f"pretrained on {meta['first_bar']} .. {meta['last_bar']}, which overlaps bars "
                f"this run tests on ({_utc(lo).isoformat()} .. {_utc(hi).isoformat()})"
            )
            break
    return errors


def _utc(x: datetime | str) -> datetime:
    d = datetime.fromisoformat(x) if isinstance(x, str) else x
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def find_encoder(root: Path, **checks: Any) -> Path:
    """The most recently created encoder under ``root`` (recursively) that passes
    :func:`compatibility_errors` with ``checks``; ``ValueError`` listing why each
    candidate was rejected when none does."""
    found: list[tuple[str, Path]] = []
    rejected: list[str] = []
    for f in sorted(Path(root).rglob(META)):
        try:
            meta = read_encoder_meta(f.parent)
        except ValueError as exc:  # an unrelated encoder.json is a rejection with a reason
            rejected.append(f"{f.parent}: {exc}")
            continue
        errs = compatibility_errors(meta, **checks)
        if errs:
            rejected.append(f"{f.parent}: {'; '.join(errs)}")
        else:
            found.append((meta["created"], f.parent))
    if rejected:
        log.info("pretrained encoders under %s rejected:\n  %s", root, "\n  ".join(rejected))
    if not found:
        why = "\n  ".join(rejected) if rejected else "no encoder.json found"
        raise ValueError(
            f"no compatible pretrained encoder under {root} (run `cappuccino rl "
            f"pretrain-encoder` with this run's data, env and split):\n  {why}"
        )
    return max(found, key=lambda x: _utc(x[0]))[1]


def resolve_encoder(ft: FTPolicySettings, **checks: Any) -> PretrainedEncoder:
    """The encoder ``ft.pretrained`` names (``'auto'``: :func:`find_encoder` under
    ``ft.pretrained_root``), after every compatibility check; the error names each
    mismatch."""
    if ft.pretrained is None:
        raise ValueError("ppo.ft.pretrained is None: nothing to load")
    checks = {**checks, "allow_timeframe_transfer": ft.allow_timeframe_transfer}
    path = (find_encoder(ft.pretrained_root, ft=ft, **checks) if ft.pretrained == "auto"
            else Path(ft.pretrained))  # fmt: skip
    enc = load_encoder(path, ft.pretrained_weights)
    errs = compatibility_errors(enc.meta, ft=ft, **checks)
    if errs:
        raise ValueError(f"pretrained encoder {path}: " + "; ".join(errs))
    return enc


def segment_times(
    data: MarketArrays, segments: list[tuple[int, int]]
) -> list[tuple[datetime, datetime]]:
    """Open times of the first and last bar of each ``[a, b)`` segment."""
    out = []
    for a, b in segments:
        d = data.slice(a, b).describe()
        out.append((_utc(d["start"]), _utc(d["end"])))
    return out
