"""Search spaces (no dead parameters) and a small supervised study end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.config.loading import apply_overrides
from cappuccino.config.rl import RLTrainConfig
from cappuccino.config.tuning import TuneConfig
from cappuccino.features.sets import get_feature_set
from cappuccino.models.registry import build_model
from cappuccino.tuning.spaces import mappo_space, ppo_space, supervised_space
from cappuccino.tuning.study import SupervisedObjective

MODELS = ["mlp", "lstm_attention", "gru_attention", "cnn_lstm", "price_action_transformer",
          "ft_transformer"]  # fmt: skip


def _at(tree: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("model", MODELS)
def test_every_sampled_value_reaches_the_config_and_the_model(model: str) -> None:
    space = supervised_space(model)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    objective = SupervisedObjective(
        TuneConfig.model_validate({"supervised": {"model": model}}), pl.DataFrame()
    )
    seen: set[str] = set()
    for _ in range(6):
        trial = study.ask()
        params, overrides = space.sample(trial)
        seen |= set(params)
        cfg = objective.config_for(overrides, trial.number)
        tree = cfg.model_dump(mode="json", by_alias=True)
        for path, value in overrides.items():
            assert _at(tree, path) == value, path
        # every sampled name set a config path or went into one through the combiner
        for d in space.dims:
            if d.name in params and d.path is not None:
                assert overrides[d.path] == params[d.name]
        torch.manual_seed(0)
        net = build_model(
            model,
            n_features=len(get_feature_set(cfg.feature_set).columns),
            window=cfg.windows.lookback,
            n_assets=3,
            overrides=cfg.model_config_,
        )
        if model == "mlp":  # the named layout is the network's hidden layers
            widths = {"128-64": [128, 64], "256-128": [256, 128], "256-128-64": [256, 128, 64],
                      "512-256-128": [512, 256, 128]}[params["hidden"]]  # fmt: skip
            linears = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
            assert linears[: len(widths)] == widths
        attn = [m for m in net.modules() if isinstance(m, torch.nn.MultiheadAttention)]
        sampled_heads = [v for k, v in params.items() if k.startswith("heads")]
        if attn:  # attention built with exactly the sampled heads (and width)
            assert {m.num_heads for m in attn} == set(sampled_heads)
            if "attention_dim" in params:
                assert {m.embed_dim for m in attn} == {params["attention_dim"]}
        study.tell(trial, 0.0)
    unconditional = {d.name for d in space.dims if d.when is None}
    assert unconditional <= seen


def _sampled_rl_configs(space: Any, base: dict[str, Any], n: int
                        ) -> Iterator[tuple[dict[str, Any], RLTrainConfig]]:  # fmt: skip
    """``n`` random draws of ``space`` applied to ``base``, each checked to land in the
    validated config: ``(params, config)``."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        trial = study.ask()
        params, overrides = space.sample(trial)
        cfg = RLTrainConfig.model_validate(
            apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
        )
        tree = cfg.model_dump(mode="json")
        for path, value in overrides.items():
            assert _at(tree, path) == value, path
        yield params, cfg
        study.tell(trial, 0.0)


def test_ppo_space_values_reach_the_rl_config() -> None:
    """Every sampled value lands in the validated config; the FT arm's architecture is
    sampled from scratch and taken from the encoder when pretrained (never both)."""
    from cappuccino.bundles.encoder import PretrainedEncoder

    enc = PretrainedEncoder(
        path=Path("/encoders/e1"), state_dict={}, scaler=None, weights="best",  # type: ignore[arg-type]
        meta={"encoder": {"d_token": 24, "n_blocks": 2, "n_heads": 3, "d_out": 16},
              "env": {"lookback": 7, "scaler": "robust"}},
    )  # fmt: skip
    kinds = set()
    for params, cfg in _sampled_rl_configs(ppo_space(enc), RLTrainConfig().model_dump(), 60):
        assert cfg.ppo.hidden_sizes == [params["width"]] * params["depth"]
        ft = cfg.ppo.ft
        if not params["use_ft_encoder"]:
            kinds.add("mlp")
            assert ft is None and "ft_use_pretrained" not in params
            assert cfg.env.lookback == params["lookback"]
        elif not params["ft_use_pretrained"]:
            kinds.add("scratch")
            assert ft is not None and ft.pretrained is None
            assert (ft.d_token, ft.n_blocks) == (params["ft_d_token"], params["ft_n_blocks"])
            assert ft.n_heads == params[f"ft_n_heads_w{ft.d_token}"]
            assert ft.d_token % ft.n_heads == 0 and ft.dropout == params["ft_dropout"]
        else:
            kinds.add("pretrained")
            assert ft is not None and ft.pretrained == "/encoders/e1"
            # nothing the encoder fixes was sampled
            assert not {"lookback", "scaler", "ft_d_token", "ft_n_blocks"} & set(params)
            assert (ft.d_token, ft.n_blocks, ft.n_heads, ft.d_out) == (24, 2, 3, 16)
            assert (cfg.env.lookback, cfg.env.scaler) == (7, "robust")
            assert ft.freeze == params["ft_freeze_encoder"]
            assert ft.lr_scale == (1.0 if ft.freeze else params["ft_lr_scale"])
    assert kinds == {"mlp", "scratch", "pretrained"}


def test_mappo_space_values_reach_the_multiagent_config() -> None:
    """Every sampled MAPPO value lands in the validated config: widths and depths, the
    critic, value normalisation, the master's reward weights and learning rate; the
    encoder's architecture only for its source, freezing only for a pretrained encoder,
    whose lookback is then not sampled."""
    base = RLTrainConfig.model_validate(
        {"mappo": {"encoder": {"source": "supervised", "bundle": "/models/lstm"}}}
    ).model_dump(mode="json")
    sources = set()
    for params, cfg in _sampled_rl_configs(mappo_space(supervised=True), base, 60):
        m = cfg.mappo
        assert m is not None
        assert m.actor_hidden == [params["actor_width"]] * params["actor_depth"]
        assert m.critic_hidden == [params["critic_width"]] * params["critic_depth"]
        assert (m.critic, m.value_norm) == (params["critic"], params["value_norm"])
        r = m.master.reward
        assert (r.sharpe, r.log_return, r.drawdown, r.diversification) == tuple(
            params[f"reward_{k}"] for k in ("sharpe", "log_return", "drawdown", "diversification")
        )
        assert m.master.learning_rate == params["master_learning_rate"]
        assert cfg.ppo.learning_rate == params["learning_rate"]
        enc = m.encoder
        sources.add(enc.source)
        assert enc.source == params["encoder_source"]
        if enc.source == "mlp":
            assert enc.hidden == [params["encoder_width"]] and "ft_d_token" not in params
        elif enc.source == "ft":
            assert enc.ft is not None and enc.ft.d_token == params["ft_d_token"]
            assert enc.ft.n_heads == params[f"ft_n_heads_w{enc.ft.d_token}"]
            assert enc.ft.d_token % enc.ft.n_heads == 0 and enc.ft.pretrained is None
        else:
            assert "lookback" not in params and enc.bundle == Path("/models/lstm")
        assert ("encoder_freeze" in params) == (enc.source == "supervised")
        assert enc.freeze == params.get("encoder_freeze", False)
        assert ("encoder_lr_scale" in params) == (not enc.freeze)
    assert sources == {"mlp", "ft", "supervised"}
    assert {d.choices for d in mappo_space().dims if d.name == "encoder_source"} == {
        ("mlp", "ft")}  # fmt: skip


def test_space_ranges_are_overridable_and_unknown_names_are_clear() -> None:
    space = supervised_space("mlp").with_overrides(
        {"learning_rate": {"low": 0.01, "high": 0.02}, "activation": {"choices": ["tanh"]}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        params, _ = space.sample(study.ask())
        assert 0.01 <= params["learning_rate"] <= 0.02 and params["activation"] == "tanh"
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        supervised_space("mlp").with_overrides({"learnig_rate": {"low": 0.1}})
    # a loss sampled among several makes val_loss incomparable; mlp's published space is focal
    cnn = TuneConfig.model_validate({"metric": "val_loss", "direction": "minimize",
                                     "supervised": {"model": "cnn_lstm"}})  # fmt: skip
    with pytest.raises(ValueError, match="not comparable across trials"):
        SupervisedObjective(cnn, pl.DataFrame())
    assert {d.choices for d in supervised_space("mlp").dims if d.name == "loss"} == {("focal",)}
    with pytest.raises(ValueError, match="low 0.5 > high 0.1"):
        supervised_space("mlp").with_overrides({"dropout": {"low": 0.5, "high": 0.1}})


def test_a_small_study_end_to_end(tmp_path: Path, mlflow_store: Any) -> None:
    from mlflow.tracking import MlflowClient

    runner = CliRunner()
    store = tmp_path / "store"
    assert runner.invoke(app, ["data", "sample", "--store", str(store), "--json"]).exit_code == 0
    uri = mlflow_store(tmp_path / "mlflow.db")
    args = [
        "tune", "--study-name", "s", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
        "--n-trials", "4", "--json",
        "--set", f"supervised.data.store={store}", "--set", "supervised.data.symbols=[BTC/USDT]",
        "--set", "supervised.train.epochs=3", "--set", f"output_dir={tmp_path / 'out'}",
        "--set", f"supervised.tracking_uri={uri}", "--set", "supervised.backtest.enabled=false",
        "--set", "pruner.n_startup_trials=2", "--set", "pruner.n_warmup_steps=0",
        "--set", "space.lookback.choices=[4]",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["finished"] == 4 and sum(doc["counts"].values()) == 4
    assert doc["counts"].get("COMPLETE", 0) >= 2  # the first two are never pruned
    assert (Path(doc["best_bundle"]) / "model.pt").is_file()
    bundle = json.loads((Path(doc["best_bundle"]) / "bundle.json").read_text())
    assert (
        bundle["lookback"] == 4
        and bundle["model_params"]["dropout"] == doc["best_params"]["dropout"]
    )
    # the study is one parent run; each trial a nested run (a pruned one ends KILLED)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cappuccino")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "study_s"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 4
    pruned = doc["counts"].get("PRUNED", 0)
    assert sum(r.info.status == "KILLED" for r in trials) == pruned
    # the report: top trials best first, history with the best so far, an HTML page
    rep_args = ["tune", "report", "--study-name", "s", "--storage", args[4], "--json",
                "--out", str(tmp_path / "report.html")]  # fmt: skip
    rep = json.loads(runner.invoke(app, rep_args).stdout)
    values = [t["value"] for t in rep["top_trials"]]
    assert values == sorted(values, reverse=True) and values[0] == doc["best_value"]
    assert [h["best"] for h in rep["history"]] == [
        max(h["value"] for h in rep["history"][: i + 1]) for i in range(len(rep["history"]))
    ]
    assert set(rep["pruned_at"]) == {
        t for t in range(4) if t not in {h["trial"] for h in rep["history"]}
    }
    assert "Top trials" in (tmp_path / "report.html").read_text()
    # export: the best bundle, or an ensemble of the top two averaging probabilities
    best_args = ["tune", "best", "--study-name", "s", "--storage", args[4], "--json"]
    one = json.loads(runner.invoke(app, [*best_args, "--out", str(tmp_path / "b1")]).stdout)
    assert one["trials"] == [doc["best_trial"]] and (tmp_path / "b1" / "model.pt").is_file()
    two = json.loads(
        runner.invoke(app, [*best_args, "--top", "2", "--out", str(tmp_path / "b2")]).stdout
    )
    assert two["ensemble"] and two["trials"] == [t["trial"] for t in rep["top_trials"][:2]]
    from cappuccino.bundles.supervised import load_bundle
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore
    from cappuccino.workflows.supervised import predict, predict_ensemble

    bars = ParquetStore(store).read_universe(Timeframe.parse("1h"), ["BTC/USDT"]).tail(400)
    ens = predict_ensemble(tmp_path / "b2", bars)
    members = [predict(load_bundle(tmp_path / "b2" / "members" / str(i)), bars) for i in (0, 1)]
    joined = members[0].join(members[1], on=["timestamp", "symbol"], suffix="_b").sort("timestamp")
    mean = joined.select(((pl.col("prob") + pl.col("prob_b")) / 2).alias("m"))["m"]
    assert ens.height == joined.height > 0
    assert (ens.sort("timestamp")["prob"] - mean).abs().max() < 1e-12
    nope = runner.invoke(app, [*best_args, "--out", str(tmp_path / "b1")])
    assert nope.exit_code == 2 and "exists" in nope.output
    # joining the finished study runs nothing more
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["counts"] == doc["counts"] and again["this_worker"] == {"ran": 0, "skipped": 0}


def test_tune_with_two_local_workers(tmp_path: Path) -> None:
    runner = CliRunner()
    store = tmp_path / "store"
    assert runner.invoke(app, ["data", "sample", "--store", str(store), "--json"]).exit_code == 0
    res = runner.invoke(app, [
        "tune", "--study-name", "w2", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
        "--n-trials", "3", "--workers", "2", "--json",
        "--set", f"supervised.data.store={store}", "--set", "supervised.data.symbols=[ETH/USDT]",
        "--set", "supervised.train.epochs=1", "--set", f"output_dir={tmp_path / 'out'}",
        "--set", "supervised.tracking_uri=null", "--set", "supervised.backtest.enabled=false",
        "--set", "pruner.kind=none", "--set", "space.lookback.choices=[4]",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # one document: the second worker writes to stderr
    assert doc["workers"] == 2 and doc["counts"] == {"COMPLETE": 3}
    assert doc["this_worker"]["ran"] <= 3


def test_a_sqlite_study_is_written_in_wal_mode(tmp_path: Path) -> None:
    """Readers (monitor, dashboard) then never block a worker's commit."""
    import sqlite3

    from cappuccino.config.tuning import StorageSettings
    from cappuccino.tuning.study import make_storage

    db = tmp_path / "s" / "study.db"
    make_storage(StorageSettings(url=f"sqlite:///{db}")).engine.dispose()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()
