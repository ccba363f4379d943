"""Masked feature modelling, pretrained-encoder compatibility and PPO from a pretrained
encoder."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from cappuccino.bundles.encoder import (
    compatibility_errors,
    find_encoder,
    load_encoder,
    read_encoder_meta,
)
from cappuccino.bundles.manifest import read_weights as read_state_dict
from cappuccino.bundles.rl import load_bundle
from cappuccino.config.rl import (
    EnvSettings,
    FTEncoderSettings,
    FTPolicySettings,
    PretrainConfig,
    RLTrainConfig,
)
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.models.ft_transformer import FTStateEncoder
from cappuccino.training.rl.pretrain import (
    MaskedFeatureModel,
    draw_mask,
    masked_mse,
    pretrain_encoder,
    pretrain_periods,
)
from cappuccino.training.rl.train import train_rl

from .helpers import make_env, random_market

ENC = {"d_token": 8, "n_blocks": 1, "n_heads": 2, "dropout": 0.0, "d_out": 8}


def _data() -> MarketArrays:
    return random_market(t=320, a=2, seed=3)


def _when(data: MarketArrays, i: int) -> str:
    return data.datetime_at(i).isoformat()


def _cfg(tmp_path: Path, data: MarketArrays, name: str = "enc", **kw: object) -> PretrainConfig:
    base = {
        "seed": 0, "output_dir": str(tmp_path / name),
        "split": {"train_end": _when(data, 239)},
        "env": {"lookback": 3, "episode_bars": 20},
        "encoder": ENC,
        "pretrain": {"epochs": 3, "batch_size": 64, "val_fraction": 0.25, "patience": None},
    }  # fmt: skip
    base.update(kw)
    return PretrainConfig.model_validate(base)


def test_draw_mask_masks_exactly_the_ratio_per_row() -> None:
    g = torch.Generator().manual_seed(0)
    m = draw_mask(500, 20, 0.15, g)
    assert m.dtype == torch.bool and (m.sum(dim=1) == 3).all()
    # every slot gets masked (uniform choice), and rows differ
    assert (m.sum(dim=0) > 0).all() and len({tuple(r.tolist()) for r in m}) > 100
    assert (draw_mask(4, 5, 0.01, g).sum(dim=1) == 1).all()  # at least one


def test_masked_mse_counts_masked_slots_only() -> None:
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 3.0], [10.0, 10.0], [2.0, 2.0]]])
    mask = torch.tensor([[True, False, True]])
    # slot 0: (1 + 9) / 2 = 5, slot 2: 4; the unmasked slot's 100 is ignored
    assert float(masked_mse(pred, target, mask)) == pytest.approx(4.5)


def test_masked_slot_values_are_hidden_and_cls_matches_forward() -> None:
    torch.manual_seed(0)
    enc = FTStateEncoder(n_assets=2, n_features=3, lookback=4, d_token=8, n_blocks=2,
                         n_heads=2, d_out=5).eval()  # fmt: skip
    model = MaskedFeatureModel(enc).eval()
    obs = torch.randn(6, enc.obs_dim)
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:, 4] = True
    # slot 4 = asset 1, feature 1: its lagged values sit at 1 + 2 + lag * 6 + 4
    cols = [3 + lag * 6 + 4 for lag in range(4)]
    assert torch.equal(enc.slot_values(obs)[:, 4], obs[:, cols])
    moved = obs.clone()
    moved[:, cols] += 5.0
    with torch.no_grad():
        assert torch.allclose(model(obs, mask), model(moved, mask), atol=1e-6)
        assert not torch.allclose(model(obs, mask * False), model(moved, mask * False))
        # the blocks run over every token share their weights with forward: [CLS] agrees
        cls = enc.token_states(enc.tokens(obs))[:, 0]
        assert torch.allclose(enc.backbone.output(cls), enc(obs), atol=1e-6)


def test_pretraining_split_scaler_files_and_reproducibility(tmp_path: Path) -> None:
    data = _data()
    cfg = _cfg(tmp_path, data)
    (a, b), (c, d), embargo = pretrain_periods(data, cfg)
    # training period = bars 0..239; last quarter (60 bars) is val, lookback 3 bars embargo
    assert (c, d) == (180, 240) and embargo == 3 and (a, b) == (0, 177)
    res = pretrain_encoder(cfg, data)
    meta = read_encoder_meta(res.path)
    assert meta["last_bar"] == _when(data, 239) and meta["first_bar"] == _when(data, 0)
    assert meta["periods"]["train"]["n_bars"] == 177 and meta["periods"]["val"]["n_bars"] == 60
    # inputs scaled as the RL observation: a scaler fitted on the pretrain-train bars only
    want = Scaler.fit(data.features[a:b], "zscore")
    got = Scaler.from_dict(meta["scaler"])
    np.testing.assert_allclose(got.center, want.center)
    np.testing.assert_allclose(got.scale, want.scale)
    hist = json.loads((res.path / "history.json").read_text())
    assert len(hist) == 3 and meta["best_epoch"] == 1 + int(
        np.argmin([h["val_loss"] for h in hist])
    )
    for name in ("best", "final"):
        enc = FTStateEncoder(**meta["encoder"])
        enc.load_state_dict(read_state_dict(res.path / f"{name}_encoder.pt"))
    again = pretrain_encoder(_cfg(tmp_path, data, "enc2"), data)
    hist2 = json.loads((again.path / "history.json").read_text())
    assert [h["val_loss"] for h in hist] == [h["val_loss"] for h in hist2]


def test_pretraining_learns_a_structured_market(tmp_path: Path) -> None:
    """Feature 1 of each asset copies feature 0: a masked copy is recoverable from its twin,
    so the val loss must fall well below the slot-mean baseline."""
    base = random_market(t=600, a=2, seed=5)
    f = base.features.copy()
    f[:, :, 1] = f[:, :, 0] = np.random.default_rng(0).normal(size=f.shape[:2])
    data = dataclasses.replace(base, features=f)
    cfg = _cfg(tmp_path, data, split={"train_end": _when(data, 599)},
               encoder={**ENC, "d_token": 16},
               pretrain={"epochs": 25, "batch_size": 64, "learning_rate": 3e-3})  # fmt: skip
    meta = read_encoder_meta(pretrain_encoder(cfg, data).path)
    assert meta["best_val_loss"] < 0.5 * meta["val_baseline_loss"]


def test_embargo_shorter_than_lookback_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ValidationError, match=r"embargo_bars: got 2, expected >= env.lookback \(3\)"
    ):
        _cfg(tmp_path, _data(), pretrain={"embargo_bars": 2})


def test_compatibility_errors_name_each_mismatch(tmp_path: Path) -> None:
    data = _data()
    meta = read_encoder_meta(pretrain_encoder(_cfg(tmp_path, data), data).path)
    env = EnvSettings(lookback=3)
    ft = FTEncoderSettings(**ENC)
    assert compatibility_errors(meta, data=data, env=env, ft=ft) == []
    errs = compatibility_errors(meta, data=data, env=EnvSettings(lookback=5, scaler="robust"),
                                ft=FTEncoderSettings(**{**ENC, "d_token": 16}))  # fmt: skip
    assert "lookback 3 in encoder, 5 in env" in errs
    assert "scaler 'zscore' in encoder, 'robust' in env" in errs
    assert "d_token 8 in encoder, 16 in ppo.ft" in errs
    other = random_market(t=320, a=3, seed=3)
    assert any(e.startswith("symbols ['A0/USDT', 'A1/USDT'] in encoder") for e in
               compatibility_errors(meta, data=other, env=env, ft=ft))  # fmt: skip
    # another timeframe only when declared (ppo.ft.allow_timeframe_transfer)
    four = dataclasses.replace(data, timeframe=Timeframe.parse("4h"))
    (tf_err,) = compatibility_errors(meta, data=four, env=env, ft=ft)
    assert tf_err.startswith("timeframe '1h' in encoder, '4h' in data (set ppo.ft.allow_")
    assert compatibility_errors(meta, data=four, env=env, ft=ft,
                                allow_timeframe_transfer=True) == []  # fmt: skip
    # the tuning arm takes lookback and architecture from the encoder: not checked
    assert compatibility_errors(meta, data=data, env=EnvSettings(lookback=5), ft=None,
                                check_lookback=False) == []  # fmt: skip
    early = datetime.fromisoformat(_when(data, 200))
    (leak,) = compatibility_errors(meta, data=data, env=env, ft=ft, not_after=early)
    assert "it has seen bars the run is tested on" in leak
    (overlap,) = compatibility_errors(
        meta, data=data, env=env, ft=ft, tested=[(early, datetime.fromisoformat(_when(data, 260)))]
    )
    assert "overlaps bars this run tests on" in overlap
    later = datetime.fromisoformat(_when(data, 250))
    assert compatibility_errors(meta, data=data, env=env, ft=ft, tested=[(later, later)]) == []


def test_find_encoder_takes_the_latest_compatible_one(tmp_path: Path) -> None:
    data = _data()
    root = tmp_path / "pre"
    old = pretrain_encoder(_cfg(root, data, "old", pretrain={"epochs": 1}), data).path
    time.sleep(0.01)
    new = pretrain_encoder(_cfg(root, data, "new", pretrain={"epochs": 1}), data).path
    time.sleep(0.01)
    pretrain_encoder(_cfg(root, data, "l4", env={"lookback": 4}, pretrain={"epochs": 1}), data)
    env = EnvSettings(lookback=3)
    assert find_encoder(root, data=data, env=env, ft=FTEncoderSettings(**ENC)) == new
    assert old != new
    with pytest.raises(ValueError, match=r"l4: lookback 4 in encoder, 6 in env") as e:
        find_encoder(root, data=data, env=EnvSettings(lookback=6), ft=FTEncoderSettings(**ENC))
    assert "no compatible pretrained encoder" in str(e.value)


def _rl_cfg(tmp_path: Path, data: MarketArrays, **ft: object) -> RLTrainConfig:
    return RLTrainConfig.model_validate({
        "seed": 1, "output_dir": str(tmp_path / "rl"),
        "split": {"train_end": _when(data, 239)},
        "market": {"min_order_notional": 0.0},
        "env": {"lookback": 3, "episode_bars": 20},
        "ppo": {"n_envs": 4, "n_steps": 16, "minibatch_size": 32, "n_epochs": 2,
                "total_timesteps": 128, "learning_rate": 1e-2, "ft": {**ENC, **ft}},
    })  # fmt: skip


@pytest.mark.parametrize("freeze", [True, False])
def test_ppo_starts_from_the_pretrained_encoder(tmp_path: Path, freeze: bool) -> None:
    data = _data()
    enc_dir = pretrain_encoder(_cfg(tmp_path, data), data).path
    pre = load_encoder(enc_dir)
    cfg = _rl_cfg(tmp_path, data, pretrained=str(enc_dir), freeze=freeze, dropout=0.0)
    starts: list[dict[str, torch.Tensor]] = []

    def first(row: dict[str, float], policy: object, scaler: Scaler) -> None:
        assert scaler is not None and np.allclose(scaler.center, pre.scaler.center)
        starts.append({k: v.clone() for k, v in policy.encoder.state_dict().items()})  # type: ignore[attr-defined]

    result = train_rl(cfg, data, on_update=first)
    bundle = load_bundle(result.bundle)
    end = bundle.policy.encoder.state_dict()  # type: ignore[union-attr]
    changed = any(not torch.equal(end[k], pre.state_dict[k]) for k in end)
    assert changed is not freeze  # frozen: bit-identical to the pretrained weights
    # the bundle observes through the encoder's scaler and names the encoder
    np.testing.assert_allclose(bundle.scaler.center, pre.scaler.center)
    assert bundle.meta["pretrained_encoder"]["path"] == str(enc_dir)
    assert bundle.meta["pretrained_encoder"]["best_epoch"] == pre.meta["best_epoch"]


def test_a_mismatched_or_leaking_encoder_is_refused(tmp_path: Path) -> None:
    data = _data()
    enc_dir = pretrain_encoder(_cfg(tmp_path, data), data).path
    cfg = _rl_cfg(tmp_path, data, pretrained=str(enc_dir))
    bad = cfg.model_copy(update={"env": cfg.env.model_copy(update={"lookback": 5})})
    with pytest.raises(ValueError, match="lookback 3 in encoder, 5 in env"):
        train_rl(bad, data)
    early = cfg.model_copy(update={"split": cfg.split.model_copy(update={
        "train_end": datetime.fromisoformat(_when(data, 200)).astimezone(UTC)})})  # fmt: skip
    with pytest.raises(ValueError, match="it has seen bars the run is tested on"):
        train_rl(early, data)
    auto = _rl_cfg(tmp_path, data, pretrained="auto", pretrained_root=str(tmp_path))
    assert load_bundle(train_rl(auto, data).bundle).meta["pretrained_encoder"]["path"] == str(
        enc_dir
    )
    # final weights, not the best: a too-large learning rate makes them differ
    enc_dir = pretrain_encoder(_cfg(tmp_path, data, "hot", pretrain={
        "epochs": 3, "batch_size": 64, "learning_rate": 0.3, "patience": None}), data).path  # fmt: skip
    assert read_encoder_meta(enc_dir)["best_epoch"] < 3
    final_cfg = _rl_cfg(tmp_path, data, pretrained=str(enc_dir), pretrained_weights="final",
                        freeze=True)  # fmt: skip
    bundle = load_bundle(train_rl(final_cfg, data).bundle)
    assert bundle.meta["pretrained_encoder"]["weights"] == "final"
    final = read_state_dict(enc_dir / "final_encoder.pt")
    best = read_state_dict(enc_dir / "best_encoder.pt")
    assert any(not torch.equal(final[k], best[k]) for k in final)  # epoch 3 is not the best
    got = bundle.policy.encoder.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(got[k], final[k]) for k in final)  # frozen at the final weights


def test_rollouts_run_the_policy_in_eval_mode() -> None:
    """Dropout is off while actions are sampled: the stored log-probs are those of the
    deterministic network the backtest runs."""
    from cappuccino.config.rl import PPOSettings
    from cappuccino.training.rl.ppo import build_policy, train_ppo

    env = make_env(_data(), n_envs=4, lookback=3)
    settings = PPOSettings(n_envs=4, n_steps=8, minibatch_size=32, n_epochs=1,
                           total_timesteps=64, ft=FTPolicySettings(**{**ENC, "dropout": 0.5}))  # fmt: skip
    torch.manual_seed(0)
    policy = build_policy(env, settings)
    modes: list[bool] = []
    orig = policy.sample

    def spy(obs: torch.Tensor, generator: torch.Generator | None = None):  # type: ignore[no-untyped-def]
        modes.append(policy.training)
        return orig(obs, generator)

    policy.sample = spy  # type: ignore[method-assign]
    train_ppo(env, settings, seed=0, policy=policy)
    assert modes and not any(modes) and not policy.training


def test_a_frozen_encoder_stays_in_eval_mode() -> None:
    from cappuccino.models.actor_critic import ActorCritic

    enc = {"n_assets": 2, "n_features": 2, "lookback": 3, "d_token": 8, "n_blocks": 1,
           "n_heads": 2, "attention_dropout": 0.5, "ffn_dropout": 0.5, "d_out": 8}  # fmt: skip
    frozen = ActorCritic(obs_dim=15, action_dim=2, encoder={**enc, "freeze": True}).train()
    assert frozen.actor.training and not frozen.encoder.training  # type: ignore[union-attr]
    obs = torch.randn(4, 15)
    assert torch.equal(frozen.mean(obs), frozen.mean(obs))  # no dropout noise
    tuned = ActorCritic(obs_dim=15, action_dim=2, encoder={**enc, "freeze": False}).train()
    assert tuned.encoder.training  # type: ignore[union-attr]
