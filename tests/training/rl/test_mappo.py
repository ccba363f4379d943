"""Multi-agent PPO runs through ``train_rl``: the three stages and their lineage, what each
stage freezes, determinism, the supervised encoder and its checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from cappuccino.bundles.mappo import load_bundle
from cappuccino.config.rl import RLTrainConfig
from cappuccino.datasets.market import load_market
from cappuccino.training.rl.train import train_rl
from tests.conftest import sample_store

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
TRAIN_END = "2021-05-31T23:00:00+00:00"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_store(tmp_path_factory.mktemp("mappo"))


def _cfg(store: Path, out: Path, mappo: dict[str, Any], **env: Any) -> RLTrainConfig:
    return RLTrainConfig.model_validate({
        "seed": 3, "output_dir": str(out),
        "data": {"store": str(store), "symbols": SYMBOLS},
        "split": {"train_end": TRAIN_END},
        "env": {"lookback": 4, "episode_bars": 48, **env},
        "ppo": {"n_envs": 4, "n_steps": 16, "minibatch_size": 32, "n_epochs": 2,
                "total_timesteps": 128, "learning_rate": 3e-3},
        "mappo": {"actor_hidden": [16], "critic_hidden": [16],
                  "encoder": {"source": "mlp", "hidden": [16]},
                  "master": {"hidden": [16], "cap_hidden": 8, "learning_rate": 3e-3}, **mappo},
    })  # fmt: skip


def _params(module: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    assert module is not None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_three_stages_freeze_what_they_should_and_record_their_lineage(
    store: Path, tmp_path: Path
) -> None:
    data = load_market(store, "1h", SYMBOLS, "cappuccino14")
    s1 = train_rl(_cfg(store, tmp_path / "s1", {}), data)
    b1 = load_bundle(s1.bundle)
    assert s1.summary["stage"] == "symbols" and b1.manifest.parents == []
    assert not b1.manifest.use_master
    # same seed, same weights (CPU)
    again = load_bundle(train_rl(_cfg(store, tmp_path / "s1b", {}), data).bundle)
    assert _same(_params(b1.policy), _params(again.policy))

    s2 = train_rl(_cfg(store, tmp_path / "s2", {"stage": "master", "parent": str(s1.bundle)}),
                  data)  # fmt: skip
    b2 = load_bundle(s2.bundle)
    assert b2.manifest.use_master
    for name in ("encoder", "actor", "critic", "embed", "state_encoder"):
        assert _same(_params(getattr(b1.policy, name)), _params(getattr(b2.policy, name))), name
    assert not _same(_params(b1.policy.master_trunk), _params(b2.policy.master_trunk))
    assert [p["stage"] for p in b2.manifest.parents] == ["symbols"]
    assert b2.manifest.parents[0]["checksum"] == b1.checksum
    hist = s2.summary
    assert hist["updates"] == 2

    s3 = train_rl(_cfg(store, tmp_path / "s3", {"stage": "joint", "parent": str(s2.bundle)}),
                  data)  # fmt: skip
    b3 = load_bundle(s3.bundle)
    assert _same(_params(b2.policy.encoder), _params(b3.policy.encoder))  # frozen encoder
    assert not _same(_params(b2.policy.actor), _params(b3.policy.actor))
    assert not _same(_params(b2.policy.master_caps), _params(b3.policy.master_caps))
    assert [(p["stage"], p["checksum"]) for p in b3.manifest.parents] == [
        ("symbols", b1.checksum), ("master", b2.checksum)]  # fmt: skip
    import json

    rows = json.loads((s3.bundle / "history.json").read_text())
    assert {"symbol_entropy", "master_entropy", "master_term_sharpe", "mean_gross_multiplier",
            "master_term_diversification"} <= set(rows[0])  # fmt: skip

    # a parent of the wrong stage, or with other env settings, is refused by name
    with pytest.raises(ValueError, match=r"stage 'symbols', expected 'master'"):
        train_rl(_cfg(store, tmp_path / "x", {"stage": "joint", "parent": str(s1.bundle)}), data)
    with pytest.raises(ValueError, match=r"env.lookback 4 in the parent, 5 in the run"):
        train_rl(_cfg(store, tmp_path / "x", {"stage": "master", "parent": str(s1.bundle)},
                      lookback=5), data)  # fmt: skip
    with pytest.raises(ValueError, match=r"critic 'centralised' in the parent"):
        train_rl(_cfg(store, tmp_path / "x", {"stage": "master", "parent": str(s1.bundle),
                                              "critic": "decentralised"}), data)  # fmt: skip
    # an architecture the child sets must be the parent's (its network is the parent's)
    with pytest.raises(ValueError, match=r"mappo.master.hidden \[16\] in the parent, \[32\] in"):
        train_rl(_cfg(store, tmp_path / "x", {"stage": "master", "parent": str(s1.bundle),
                                              "master": {"hidden": [32]}}), data)  # fmt: skip


def test_ippo_critics_see_what_their_actors_see(store: Path, tmp_path: Path) -> None:
    data = load_market(store, "1h", SYMBOLS, "cappuccino14")
    b = load_bundle(train_rl(_cfg(store, tmp_path / "i", {"critic": "decentralised"}),
                             data).bundle)  # fmt: skip
    net = b.policy
    assert net.state_encoder is None
    assert net.critic.net[0].in_features == net.d_in  # type: ignore[union-attr]
    assert net.master_critic.net[0].in_features == net.spec.d_master  # type: ignore[union-attr]


def test_a_supervised_encoder_is_loaded_checked_and_frozen(store: Path, tmp_path: Path) -> None:
    from cappuccino.bundles.supervised import load_bundle as load_supervised

    from ...test_cli import run_json

    doc = run_json(
        "train", "--set", f"data.store={store}", "--set", f"output_dir={tmp_path / 'sup'}",
        "--set", f"data.symbols=[{','.join(SYMBOLS)}]", "--set", "train.epochs=1",
        "--set", "windows.lookback=4", "--set", "tracking_uri=null",
        "--set", "backtest.enabled=false", "--set", "model=lstm_attention",
        "--set", "model_params={hidden: 8, layers: 1, heads: 2, head_hidden: 8}",
        "--set", "windows.split_starts=[2021-05-01T00:00:00+00:00,2021-06-01T00:00:00+00:00]",
    )  # fmt: skip
    sup = load_supervised(Path(doc["bundle"]))
    fs = sup.meta["feature_set"]
    data = load_market(store, "1h", SYMBOLS, fs)
    enc = {"source": "supervised", "bundle": doc["bundle"], "freeze": True}
    cfg = _cfg(store, tmp_path / "ma", {"encoder": enc}, feature_set=fs)
    b = load_bundle(train_rl(cfg, data).bundle)
    got = b.policy.encoder.model.state_dict()  # type: ignore[union-attr]
    want = sup.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # loaded, and frozen
    for row in range(len(SYMBOLS)):  # observes through its scaler (pooled over symbols)
        assert b.scaler.center[row].tolist() == sup.scaler.center.tolist()
        assert b.scaler.scale[row].tolist() == sup.scaler.scale.tolist()
    assert b.manifest.encoder is not None
    assert b.manifest.encoder["checksum"] == sup.meta["checksum"]
    with pytest.raises(ValueError, match=r"lookback 4 in the bundle, 5 in the run"):
        train_rl(_cfg(store, tmp_path / "x", {"encoder": enc}, feature_set=fs, lookback=5), data)
    early = cfg.model_copy(update={"split": cfg.split.model_copy(update={
        "train_end": datetime(2021, 4, 30, 23, tzinfo=UTC)})})  # fmt: skip
    with pytest.raises(ValueError, match=r"it has seen bars the run is tested on"):
        train_rl(early, data)
