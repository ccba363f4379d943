"""Warm starts: the top trials of another study run first with exactly their values (those
that fit), and narrowed ranges hold every top trial's value and stay inside the old ones."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from cappuccino.config.tuning import TuneConfig
from cappuccino.tuning.spaces import study_space
from cappuccino.tuning.study import open_study, run_worker
from cappuccino.tuning.warm import misfit, narrow, top_trials


def _cfg(tmp_path: Path, name: str, **kw: Any) -> TuneConfig:
    return TuneConfig.model_validate({
        "study_name": name, "n_trials": 3, "output_dir": str(tmp_path / "out"),
        "storage": {"url": f"sqlite:///{tmp_path / 'studies.db'}"},
        "supervised": {"model": "mlp"}, "pruner": {"kind": "none"}, **kw,
    })  # fmt: skip


def _source(tmp_path: Path, n: int = 8) -> list[dict[str, Any]]:
    """A finished study 'old' of the mlp space: trial k scores k (so the best is the last)."""
    cfg = _cfg(tmp_path, "old", n_trials=n)
    study = open_study(cfg)
    space = study_space(cfg)
    study.sampler = optuna.samplers.RandomSampler(seed=3)
    params = []
    for k in range(n):
        trial = study.ask()
        p, _ = space.sample(trial)
        study.tell(trial, float(k))
        params.append(p)
    return params


def test_narrowed_ranges_hold_every_top_value_inside_the_old_range(tmp_path: Path) -> None:
    _source(tmp_path)
    cfg = _cfg(tmp_path, "new", narrow_from="old", top_k=3, narrow_margin=0.1)
    top = top_trials(cfg, "old", "--narrow-from")
    assert [t.value for t in top] == [7.0, 6.0, 5.0]  # best first (maximise)
    space = study_space(cfg)
    changes = narrow(space, top, 0.1)
    by_name = {d.name: d for d in space.dims}
    assert "learning_rate" in changes and "dropout" in changes
    for name, r in changes.items():
        d = by_name[name]
        assert d.low <= r["low"] <= r["high"] <= d.high and (r["low"], r["high"]) != (d.low, d.high)
        values = [t.params[name] for t in top if name in t.params]
        assert all(r["low"] <= v <= r["high"] for v in values), name
        if d.kind == "int":
            assert float(r["low"]).is_integer() and float(r["high"]).is_integer()
    # the margin by hand on one linear dimension: 10 % of the span on each side
    v = [t.params["dropout"] for t in top]
    span = max(v) - min(v)
    d = by_name["dropout"]
    assert changes["dropout"]["low"] == pytest.approx(max(d.low, min(v) - 0.1 * span))
    assert changes["dropout"]["high"] == pytest.approx(min(d.high, max(v) + 0.1 * span))
    # and in log space on a log one
    lr = [math.log(t.params["learning_rate"]) for t in top]
    pad = 0.1 * (max(lr) - min(lr))
    assert changes["learning_rate"]["low"] == pytest.approx(
        max(by_name["learning_rate"].low, math.exp(min(lr) - pad)))  # fmt: skip


def test_warm_started_trials_run_first_with_exactly_their_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `tune`: the narrowed space reaches the workers, the top trials that fit are
    the first trials run, value for value; one that does not fit is reported."""
    import cappuccino.tuning.tune as tune_mod

    params = _source(tmp_path)
    # the best trial (7) lies outside the new study's range of one dimension, which holds
    # trials 5 and 6: it cannot be run
    name = next(n for n in ("learning_rate", "weight_decay", "dropout", "focal_gamma")
                if not min(p[n] for p in params[5:7]) <= params[7][n]
                <= max(p[n] for p in params[5:7]))  # fmt: skip
    v7, vs = params[7][name], [p[name] for p in params[5:7]]
    low = (v7 + min(vs)) / 2 if v7 < min(vs) else min(vs)
    high = (v7 + max(vs)) / 2 if v7 > max(vs) else max(vs)
    space = {name: {"low": low, "high": high}}
    assert not low <= v7 <= high and all(low <= v <= high for v in vs)
    cfg = _cfg(tmp_path, "new", warm_start="old", narrow_from="old", top_k=3, space=space)
    seen: list[dict[str, Any]] = []

    def fake_work(c: TuneConfig, worker: int, *_: Any) -> dict[str, int]:
        sp = study_space(c)  # what a worker samples: the narrowed space of the resolved config
        seen_space.append(sp)

        def objective(trial: optuna.Trial) -> float:
            p, _ = sp.sample(trial)
            seen.append(p)
            return 0.0

        return run_worker(c, objective, worker=worker, poll_s=0.01)

    seen_space: list[Any] = []
    monkeypatch.setattr(tune_mod, "work", fake_work)
    summary = tune_mod.tune(cfg)
    ws = summary["warm_start"]
    assert ws["enqueued"] == [6, 5] and ws["skipped"][0]["trial"] == 7
    assert name in ws["skipped"][0]["reason"]
    assert seen[:2] == [params[6], params[5]]  # first, exactly those values
    assert len(seen) == 3 and seen[2] not in params
    narrowed = summary["narrowed_from"]
    assert narrowed["study"] == "old" and narrowed["trials"] == [7, 6, 5]
    sp = seen_space[0]
    by_name = {d.name: d for d in sp.dims}
    for name, r in narrowed["changes"].items():
        assert (by_name[name].low, by_name[name].high) == (r["low"], r["high"])
    stored = optuna.load_study(study_name="new", storage=cfg.storage.url).user_attrs
    assert stored["warm_start"] == ws and stored["narrowed_from"] == narrowed
    # a launcher joining later samples the stored narrowing, though 'old' has moved on
    src = optuna.load_study(study_name="old", storage=cfg.storage.url)
    src.sampler = optuna.samplers.RandomSampler(seed=11)
    trial = src.ask()
    study_space(cfg).sample(trial)
    src.tell(trial, 100.0)  # the new best of 'old'
    again = tune_mod.tune(cfg.model_copy(update={"n_trials": 4}))
    assert again["narrowed_from"] == narrowed and again["warm_start"] == ws
    by_name = {d.name: d for d in seen_space[1].dims}
    for name, r in narrowed["changes"].items():
        assert (by_name[name].low, by_name[name].high) == (r["low"], r["high"])
    assert len(seen) == 4  # one more trial, no second warm start


def test_misfits_and_unknown_studies_are_named(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "new")
    space = study_space(cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    good, _ = space.sample(study.ask())
    assert misfit(space, good) is None
    assert misfit(space, {**good, "momentum": 0.9}) == "momentum not in this space"
    bad = {**good, "batch_size": 64}
    assert misfit(space, bad) == "batch_size = 64 is outside (256, 512, 1024)"
    missing = {k: v for k, v in good.items() if k != "dropout"}
    assert misfit(space, missing) == "dropout is not set"
    with pytest.raises(ValueError, match=r"--warm-start: got 'old', no such study in sqlite:///"):
        top_trials(cfg, "old", "--warm-start")
    _source(tmp_path, n=1)
    open_study(_cfg(tmp_path, "empty"))
    with pytest.raises(ValueError, match="--narrow-from: study 'empty' has no complete trial"):
        top_trials(cfg, "empty", "--narrow-from")
