"""The RL objective over CPCV folds on a synthetic market: no test bar is trained on, the
files agree with the folds, a pruner can stop a trial after a fold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest

from cappuccino.config.tuning import TuneConfig
from cappuccino.metrics.returns import sharpe_ratio
from cappuccino.tuning.rl_objective import RLObjective

from ..training.rl.helpers import random_market


def _cfg(tmp_path: Path) -> TuneConfig:
    return TuneConfig.model_validate(
        {
            "kind": "rl", "study_name": "rl", "output_dir": str(tmp_path),
            "cv": {"n_groups": 4, "n_test_groups": 1, "purge_bars": 3, "embargo_bars": 2,
                   "benchmark": "equal_weight:1"},
            "space": {"lookback": {"choices": [2]}, "n_steps": {"choices": [32]},
                      "minibatch_size": {"choices": [64]}, "n_epochs": {"choices": [2]},
                      "use_ft_encoder": {"choices": [False]}},
            "rl": {"env": {"lookback": 2, "episode_bars": 20},
                   "ppo": {"n_envs": 4, "total_timesteps": 256},
                   "market": {"min_order_notional": 0.0}},
        }
    )  # fmt: skip


def test_folds_train_on_train_bars_and_score_on_test_bars(tmp_path: Path) -> None:
    data = random_market(t=400, a=3, seed=4)
    cfg = _cfg(tmp_path)
    obj = RLObjective(cfg, data)
    assert len(obj.folds) == 4
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(obj, n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE"
    folds = json.loads(Path(trial.user_attrs["folds"]).read_text())["folds"]
    returns = pl.read_parquet(trial.user_attrs["oos_returns"])
    assert trial.value == pytest.approx(np.mean([f["score"] for f in folds]))
    ts_ms = returns["timestamp"].dt.epoch("ms").to_numpy()
    close_ms = data.timestamps + data.timeframe.ms
    for i, (f, fold) in enumerate(zip(folds, obj.folds, strict=True)):
        assert f["score"] == pytest.approx(f["sharpe"] - f["benchmark_sharpe"])
        mine = returns.filter(pl.col("fold") == i)
        ppy = data.timeframe.periods_per_year
        assert sharpe_ratio(mine["return"].to_numpy(), ppy) == pytest.approx(f["sharpe"])
        # every scored bar's close is a test bar's close; none is a train bar's
        bars = np.searchsorted(close_ms, ts_ms[returns["fold"].to_numpy() == i])
        test = set(fold.test_index().tolist())
        assert set(bars.tolist()) <= test
        assert not set(bars.tolist()) & set(fold.train_index().tolist())
        # each test segment contributes its bars after the first decision, which needs
        # lookback - 1 = 1 bar of history (only the very first segment lacks it)
        assert len(bars) == sum(b - max(a, 1) - 1 for a, b in fold.test)
    meta = json.loads((Path(trial.user_attrs["bundle"]) / "bundle.json").read_text())
    best = int(np.argmax([f["score"] for f in folds]))
    assert meta["train_period"]["fold"] == best
    assert [tuple(s) for s in meta["train_period"]["segments"]] == list(obj.folds[best].train)


def test_a_pruner_stops_a_trial_after_its_first_fold(tmp_path: Path) -> None:
    obj = RLObjective(_cfg(tmp_path), random_market(t=400, a=3, seed=5))
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1e9)
    )
    from cappuccino.tuning.study import guarded

    study.optimize(guarded(obj, 5), n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [0]
    assert "bundle" not in trial.user_attrs


def test_an_rl_study_reports_pbo_deflated_sharpe_and_cpcv_paths(tmp_path: Path) -> None:
    from cappuccino.tuning.report import study_report, write_report_html
    from cappuccino.tuning.study import run_worker

    cfg = _cfg(tmp_path).model_copy(
        update={"n_trials": 3, "storage": _cfg(tmp_path).storage.model_copy(
            update={"url": f"sqlite:///{tmp_path / 'rl.db'}"}),
            "pruner": _cfg(tmp_path).pruner.model_copy(update={"kind": "none"}),
            "cv": _cfg(tmp_path).cv.model_copy(update={"n_test_groups": 2})}
    )  # fmt: skip
    data = random_market(t=400, a=3, seed=6)
    assert run_worker(cfg, RLObjective(cfg, data)) == {"ran": 3, "skipped": 0}
    rep = study_report(cfg)
    assert rep["counts"] == {"COMPLETE": 3}
    assert 0.0 <= rep["pbo"]["pbo"] <= 1.0 and rep["pbo"]["n_trials"] == 3
    dsr = rep["deflated_sharpe"]
    assert dsr["n_trials"] == 3 and 0.0 <= dsr["deflated_sharpe"] <= dsr["probabilistic_sharpe"]
    assert rep["cpcv"]["paths"] == 3  # C(4, 2) * 2 / 4
    # the best trial by the DSR's series is the one with the highest averaged-return Sharpe
    sharpes = rep["trial_sharpes"]
    assert dsr["trial"] == max(sharpes, key=lambda k: sharpes[k])
    html = write_report_html(rep, tmp_path / "r.html").read_text()
    assert "Probability of backtest overfitting" in html
    # the top two as an ensemble averaging actions, backtested through the market core
    from cappuccino.bundles import load_policy
    from cappuccino.tuning.export import export_best
    from cappuccino.workflows.backtest import evaluate

    doc = export_best(cfg, tmp_path / "ens", top=2)
    assert doc["ensemble"] and doc["trials"] == [t["trial"] for t in rep["top_trials"][:2]]
    ens = load_policy(tmp_path / "ens")
    assert ens.kind == "rl-ensemble"
    ev = evaluate(data, ens, benchmarks=["cash"])
    assert ev.policy.name == "ensemble" and ev.verdict is not None
    assert ev.policy.equity.size == data.n_bars - ens.policy.lookback + 1
    # the best trial's bundle, exported and backtested with a report (this crashed with
    # KeyError: 'start' while CPCV bundles kept their training period in another shape)
    from cappuccino.workflows.backtest import write_evaluation

    export_best(cfg, tmp_path / "best", top=1)
    best = load_policy(tmp_path / "best")
    assert best.train_period is not None and best.train_period["segments"]
    ev1 = evaluate(data, best, benchmarks=["cash"])
    html1 = Path(write_evaluation(ev1, tmp_path / "bt", tmp_path / "bt.html")["report"]).read_text()
    assert f"{best.train_period['n_bars']:,} bars in" in html1 and "CPCV segments" in html1


def test_a_multiagent_study_trains_its_stages_per_fold_and_keeps_the_best_folds(
    tmp_path: Path,
) -> None:
    """With ``rl.mappo`` the trial is MAPPO over the MAPPO space: each fold trains the
    symbol agents, then the master; the best fold's two stages are bundles, the second
    naming the first as its parent, trained on that fold's train segments only, with the
    sampled master reward weights; the trial's value is the mean fold score."""
    from cappuccino.bundles.mappo import load_bundle

    data = random_market(t=400, a=3, seed=7)
    cfg = TuneConfig.model_validate({
        "kind": "rl", "study_name": "ma", "output_dir": str(tmp_path),
        "cv": {"n_groups": 4, "n_test_groups": 1, "purge_bars": 3, "embargo_bars": 2,
               "benchmark": "equal_weight:1", "max_folds": 2},
        "mappo_stages": ["symbols", "master"],
        "space": {"lookback": {"choices": [2]}, "n_steps": {"choices": [32]},
                  "n_epochs": {"choices": [1]}, "encoder_source": {"choices": ["mlp"]},
                  "actor_width": {"choices": [8]}, "critic_width": {"choices": [8]},
                  "actor_depth": {"high": 1}, "critic_depth": {"high": 1}},
        "rl": {"env": {"lookback": 2, "episode_bars": 20},
               "ppo": {"n_envs": 4, "minibatch_size": 64, "total_timesteps": 1024},
               "market": {"min_order_notional": 0.0},
               "mappo": {"master": {"hidden": [8], "cap_hidden": 4}}},
    })  # fmt: skip
    obj = RLObjective(cfg, data)
    assert obj.space.family == "mappo" and len(obj.folds) == 2
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(obj, n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE", trial.user_attrs
    folds = json.loads(Path(trial.user_attrs["folds"]).read_text())["folds"]
    assert trial.value == pytest.approx(np.mean([f["score"] for f in folds]))
    last = load_bundle(trial.user_attrs["bundle"])
    assert last.manifest.stage == "master" and last.manifest.use_master
    (parent,) = last.manifest.parents
    first = load_bundle(parent["path"])
    assert first.manifest.stage == "symbols" and parent["checksum"] == first.checksum
    best = int(np.argmax([f["score"] for f in folds]))
    for b in (first, last):
        assert b.manifest.train_period.fold == best
        assert [tuple(s) for s in b.manifest.train_period.segments] == list(obj.folds[best].train)
    r = last.manifest.mappo.master.reward
    assert (r.sharpe, r.drawdown) == (trial.params["reward_sharpe"],
                                      trial.params["reward_drawdown"])  # fmt: skip
    # the budget was split between the stages: 8 updates of 4 x 32 steps, 4 each
    # a fold trained again (the process's random state has moved on) scores the same
    again = obj.run_fold(obj.config_for(obj.space.sample(optuna.trial.FixedTrial(
        trial.params))[1], 99), obj.folds[0])  # fmt: skip
    assert again["score"] == folds[0]["score"]
    hist = [json.loads((b.path / "history.json").read_text()) for b in (first, last)]
    assert [len(h) for h in hist] == [4, 4] and hist[0][-1]["timesteps"] == 512
