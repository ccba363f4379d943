"""The FT-Transformer arm of an RL study: the encoder is found automatically, must not
have seen a tested bar, and fixes the architecture of the trials that use it."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from cappuccino.config.rl import PretrainConfig
from cappuccino.config.tuning import TuneConfig
from cappuccino.training.rl.pretrain import pretrain_encoder
from cappuccino.tuning.rl_objective import RLObjective

from ..training.rl.helpers import random_market

ENC = {"d_token": 8, "n_blocks": 1, "n_heads": 2, "dropout": 0.0, "d_out": 8}


def _tune(tmp_path: Path, **space: object) -> TuneConfig:
    return TuneConfig.model_validate({
        "kind": "rl", "study_name": "ft", "output_dir": str(tmp_path / "tune"),
        "cv": {"n_groups": 3, "n_test_groups": 1, "purge_bars": 3, "embargo_bars": 2,
               "benchmark": "equal_weight:1", "max_folds": 1},
        "space": {"n_steps": {"choices": [16]}, "minibatch_size": {"choices": [32]},
                  "n_epochs": {"choices": [1]}, **space},
        "rl": {"env": {"lookback": 2, "episode_bars": 20},
               "ppo": {"n_envs": 2, "n_steps": 16, "minibatch_size": 32, "total_timesteps": 64,
                       "ft": {"pretrained_root": str(tmp_path / "pre")}},
               "market": {"min_order_notional": 0.0}},
    })  # fmt: skip


def _pretrain(tmp_path: Path, data, last: int) -> Path:  # type: ignore[no-untyped-def]
    cfg = PretrainConfig.model_validate({
        "output_dir": str(tmp_path / "pre" / "e1"),
        "split": {"train_end": data.datetime_at(last).isoformat()},
        "env": {"lookback": 3, "episode_bars": 20}, "encoder": ENC,
        "pretrain": {"epochs": 1, "batch_size": 64},
    })  # fmt: skip
    return pretrain_encoder(cfg, data).path


def test_the_space_needs_an_encoder_it_may_choose(tmp_path: Path) -> None:
    data = random_market(t=400, a=2, seed=1)
    with pytest.raises(ValueError, match=r"no compatible pretrained encoder[\s\S]*"
                       r"space.ft_use_pretrained.choices: \[false\]"):  # fmt: skip
        RLObjective(_tune(tmp_path), data)
    # an encoder pretrained on bars the folds test on is rejected, with the reason
    _pretrain(tmp_path, data, 399)
    with pytest.raises(ValueError, match="overlaps bars this run tests on"):
        RLObjective(_tune(tmp_path), data)
    assert (
        RLObjective(_tune(tmp_path, ft_use_pretrained={"choices": [False]}), data).encoder is None
    )


def test_a_pretrained_trial_uses_the_encoder_before_the_study_data(tmp_path: Path) -> None:
    full = random_market(t=700, a=2, seed=2)
    enc = _pretrain(tmp_path, full, 299)
    study_data = full.slice(320, 700)  # what cv.start = bar 320 gives the study
    cfg = _tune(tmp_path, use_ft_encoder={"choices": [True]},
                ft_use_pretrained={"choices": [True]}, ft_freeze_encoder={"choices": [True]})  # fmt: skip
    obj = RLObjective(cfg, study_data)
    assert obj.encoder is not None and obj.encoder.path == enc
    study = optuna.create_study(direction="maximize")
    study.optimize(obj, n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE", trial.user_attrs
    assert "lookback" not in trial.params and "ft_d_token" not in trial.params
    meta = json.loads((Path(trial.user_attrs["bundle"]) / "bundle.json").read_text())
    assert meta["pretrained_encoder"]["path"] == str(enc)
    assert meta["env"]["lookback"] == 3 and meta["policy"]["encoder"]["d_token"] == 8
    enc_meta = json.loads((enc / "encoder.json").read_text())
    assert meta["scaler"] == enc_meta["scaler"]  # observed through the encoder's scaler
    import torch

    from cappuccino.bundles.manifest import read_weights as read_state_dict

    state = read_state_dict(Path(trial.user_attrs["bundle"]) / "policy.pt")
    pre = read_state_dict(enc / "best_encoder.pt")
    assert all(torch.equal(state[f"encoder.{k}"], v) for k, v in pre.items())  # frozen
