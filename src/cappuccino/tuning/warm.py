"""Warm starts between studies (``cappuccino tune --warm-start STUDY --narrow-from STUDY``).

The system we replace carried its best trials into the next study and narrowed the ranges
around its winners. Here both read the ``top_k`` best complete trials of another study in
the same storage:

- :func:`narrow`: each numeric dimension's range becomes the span of those trials' values,
  widened by ``narrow_margin`` of the span on each side (in log space for a log-scaled
  dimension; a single value is widened by the margin of itself), and never wider than the
  range it had. Categorical dimensions are left alone. The changes are logged, stored on
  the new study (``narrowed_from``) and become the study's ``space`` overrides, so every
  worker samples the narrowed space; a launcher joining the study later uses the stored
  narrowing, not one recomputed from a source study that may have moved on.
- :func:`warm_start`: each of those trials' parameter sets is enqueued in the new study
  when it fits the new study's space (:func:`misfit`: every dimension the space would
  sample given those values is present and inside its range or choices, and nothing
  else), so they are the first trials run, with exactly those values; the others are
  reported with the reason. The outcome is stored on the new study (``warm_start``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cappuccino.config.tuning import TuneConfig
from cappuccino.tuning.spaces import Dim, Space, study_space
from cappuccino.tuning.study import make_storage

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
WARM_ATTR, NARROW_ATTR = "warm_start", "narrowed_from"


def top_trials(cfg: TuneConfig, name: str, option: str) -> list[optuna.trial.FrozenTrial]:
    """The ``cfg.top_k`` best complete trials of study ``name`` in ``cfg``'s storage, best
    first; ``ValueError`` naming ``option`` when there is no such study or no such trial."""
    import optuna

    url = cfg.storage.url
    exists = not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).is_file()
    storage = make_storage(cfg.storage) if exists else None
    names = sorted(optuna.get_all_study_names(storage)) if storage is not None else []
    if name not in names:
        raise ValueError(f"{option}: got {name!r}, no such study in {url} (it holds "
                         f"{', '.join(names) if names else 'none'})")  # fmt: skip
    assert storage is not None  # the study exists, so does its storage
    source = optuna.load_study(study_name=name, storage=storage)
    done = [t for t in source.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]  # fmt: skip
    if not done:
        raise ValueError(f"{option}: study {name!r} has no complete trial")
    best_first = source.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: float(t.value), reverse=best_first)  # type: ignore[arg-type]
    return done[: cfg.top_k]


def _valid(d: Dim, value: Any) -> bool:
    if d.kind == "categorical":
        return value in d.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if d.kind == "int" and int(value) != value:
        return False
    return d.low <= value <= d.high


def misfit(space: Space, params: dict[str, Any]) -> str | None:
    """Why ``params`` cannot be a trial of ``space`` (None when it can)."""
    seen: dict[str, Any] = {}
    for d in space.dims:
        if d.when is not None and not d.when(seen):
            continue
        if d.name not in params:
            return f"{d.name} is not set"
        if not _valid(d, params[d.name]):
            where = d.choices if d.kind == "categorical" else f"[{d.low:g}, {d.high:g}]"
            return f"{d.name} = {params[d.name]!r} is outside {where}"
        seen[d.name] = params[d.name]
    extra = sorted(set(params) - set(seen))
    return f"{', '.join(extra)} not in this space" if extra else None


def narrow(
    space: Space, trials: list[optuna.trial.FrozenTrial], margin: float
) -> dict[str, dict[str, float]]:
    """The narrowed ranges ``{name: {low, high}}`` of ``space``'s numeric dimensions that
    ``trials`` set (module docstring); only the ranges that change."""
    out: dict[str, dict[str, float]] = {}
    for d in space.dims:
        if d.kind == "categorical":
            continue
        values = [float(t.params[d.name]) for t in trials if d.name in t.params]
        if not values:
            continue
        if d.log:
            lo, hi = math.log(min(values)), math.log(max(values))
            pad = margin * (hi - lo) if hi > lo else math.log1p(margin)
            low, high = math.exp(lo - pad), math.exp(hi + pad)
        else:
            lo, hi = min(values), max(values)
            pad = margin * (hi - lo) if hi > lo else margin * abs(lo)
            low, high = lo - pad, hi + pad
        if d.kind == "int":
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, d.low), min(high, d.high)
        if (low, high) != (d.low, d.high):
            out[d.name] = {"low": low, "high": high}
    return out


def narrowing(cfg: TuneConfig) -> dict[str, Any] | None:
    """The narrowing ``cfg.narrow_from`` asks for (None without it): the source study, its
    top trials, the margin and the changed ranges, each logged."""
    if cfg.narrow_from is None:
        return None
    trials = top_trials(cfg, cfg.narrow_from, "--narrow-from")
    space = study_space(cfg)
    changes = narrow(space, trials, cfg.narrow_margin)
    by_name = {d.name: d for d in space.dims}
    for name, r in changes.items():
        d = by_name[name]
        log.info("space.%s: [%g, %g] -> [%g, %g] (the span of study %s's top %d, margin %g)",
                 name, d.low, d.high, r["low"], r["high"], cfg.narrow_from, len(trials),
                 cfg.narrow_margin)  # fmt: skip
    return {"study": cfg.narrow_from, "trials": [t.number for t in trials],
            "margin": cfg.narrow_margin, "changes": changes}  # fmt: skip


def apply_narrowing(cfg: TuneConfig, record: dict[str, Any]) -> TuneConfig:
    """``cfg`` with the narrowed ranges of ``record`` (:func:`narrowing`) as ``space``
    overrides."""
    merged = {k: dict(v) for k, v in cfg.space.items()}
    for name, r in record["changes"].items():
        merged.setdefault(name, {}).update(r)
    return cfg.model_copy(update={"space": merged})


def warm_start(
    study: optuna.Study, cfg: TuneConfig, trials: list[optuna.trial.FrozenTrial]
) -> dict[str, Any]:
    """Enqueue those of ``trials`` (``cfg.warm_start``'s top trials, :func:`top_trials`,
    read before the new study is created) that fit ``cfg``'s space in ``study`` (module
    docstring); the record stored on the study."""
    space = study_space(cfg)
    enqueued, skipped = [], []
    for t in trials:
        why = misfit(space, t.params)
        if why is None:
            study.enqueue_trial(dict(t.params), skip_if_exists=True)
            enqueued.append(t.number)
        else:
            skipped.append({"trial": t.number, "reason": why})
            log.warning("warm start: trial %d of study %s does not fit this space: %s",
                        t.number, cfg.warm_start, why)  # fmt: skip
    log.info("warm start: %d trial(s) of study %s enqueued first", len(enqueued), cfg.warm_start)
    return {"study": cfg.warm_start, "enqueued": enqueued, "skipped": skipped}
