"""``train_supervised`` end to end on two sample pairs, tracked in memory; bundles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import torch

from cappuccino.bundles.supervised import load_bundle
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.data.sample import sample_path
from cappuccino.tracking import InMemoryTracker
from cappuccino.training.supervised import predict_split
from cappuccino.training.supervised_run import prepare_windows
from cappuccino.workflows.supervised import predict
from cappuccino.workflows.supervised import train as train_supervised


def test_train_tracks_every_epoch_and_writes_a_loadable_bundle(tmp_path: Path) -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(["BTC/USDT", "ETH/USDT"]))
    cfg = SupervisedConfig.model_validate(
        {
            "output_dir": str(tmp_path),
            "windows": {"lookback": 6, "label": "triple:tp=0.02,sl=0.02,h=12"},
            "model": "mlp",
            "model_params": {"hidden": [16]},
            "train": {"epochs": 3, "batch_size": 512, "keep_top_k": 2},
            "variant": "t",
        }
    )
    tracker = InMemoryTracker()
    summary = train_supervised(cfg, tracker, bars=bars)
    (run,) = tracker.runs.values()
    assert run.name.startswith("baseline_supervised_mlp_t_") and run.status == "FINISHED"
    assert run.tags["model_type"] == "mlp" and run.tags["experiment_type"] == "supervised"
    assert [step for step, _ in run.metrics[:2]] == [1, 2] and "val_pr_auc" in run.metrics[0][1]
    assert run.params["model"] == "mlp" and run.params["data.train.windows"] > 0
    assert run.artifacts == [
        (summary["bundle"], "bundle"),
        (str(tmp_path / "model_summary.txt"), "model"),
        (str(tmp_path / "backtest"), "backtest"),
    ]
    # the model summary (torchinfo): one batch of 2 windows x 6 bars, the parameter count
    text = (tmp_path / "model_summary.txt").read_text()
    assert f"Total params: {summary['parameters']:,}" in text
    assert "[2, 6, " in text and "Linear" in text
    assert summary["backtest"]["hold_bars"] == 12  # the triple barrier's max holding
    assert run.metrics[-1][1]["backtest_sharpe"] == summary["backtest"]["policy"]["sharpe"]
    assert run.params["env.python"] and run.params["packages.torch"] == torch.__version__
    assert run.params["env.cuda_available"] is False and run.tags["git_commit"]
    assert summary["epochs_run"] == 3 and 0.0 <= summary["test"]["roc_auc"] <= 1.0
    meta = json.loads((Path(summary["bundle"]) / "bundle.json").read_text())
    assert meta["label"]["column"] == "label_tb_hit_12" and meta["lookback"] == 6
    # top-k checkpoints: the 2 best epochs by val_loss, best first, each loadable
    hist = json.loads((Path(summary["bundle"]) / "history.json").read_text())
    best2 = sorted(hist, key=lambda r: r["val_loss"])[:2]
    assert [c["epoch"] for c in meta["checkpoints"]] == [r["epoch"] for r in best2]
    assert meta["checkpoints"][0]["epoch"] == meta["best_epoch"] == summary["best_epoch"]
    other = meta["checkpoints"][1]["epoch"]
    b_other = load_bundle(Path(summary["bundle"]), epoch=other)
    with pytest.raises(ValueError, match=r"no checkpoint of epoch 99; kept: \["):
        load_bundle(Path(summary["bundle"]), epoch=99)
    # figures: PNG files of the promised size
    from PIL import Image

    assert sorted(meta["figures"]) == ["confusion_test", "pr_test", "roc_test", "training_curves"]
    for rel in meta["figures"].values():
        with Image.open(Path(summary["bundle"]) / rel) as im:
            assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 300
    b = load_bundle(Path(summary["bundle"]))
    assert any(
        not torch.equal(p, q)
        for p, q in zip(b.model.parameters(), b_other.model.parameters(), strict=True)
    )
    data = prepare_windows(cfg, bars, torch.device("cpu"))
    z, _ = predict_split(b.model, data.splits["test"], 4096)
    probs = 1 / (1 + torch.exp(-torch.as_tensor(z, dtype=torch.float64)))
    from cappuccino.metrics.classification import roc_auc

    y = data.splits["test"].y[data.splits["test"].ends].numpy().astype(int)
    assert roc_auc(y, probs.numpy()) == pytest.approx(summary["test"]["roc_auc"], rel=1e-6)
    b.check(feature_names=list(meta["feature_names"]), lookback=6)
    with pytest.raises(ValueError, match="lookback 6 in the bundle, 10 asked"):
        b.check(feature_names=list(meta["feature_names"]), lookback=10)
    # scoring new data goes through the same features, window, scaler and symbol order
    pred = predict(b, bars)
    test = data.splits["test"]
    ends = test.ends.numpy()
    keyed = pl.DataFrame(
        {
            "timestamp": test.time_ms.numpy()[ends],
            "symbol": [data.symbols[i] for i in test.asset.numpy()[ends]],
            "expected": probs.numpy(),
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
    joined = keyed.join(pred, on=["timestamp", "symbol"], how="left")
    assert joined["prob"].null_count() == 0
    assert (joined["prob"] - joined["expected"]).abs().max() < 1e-6
    assert pred["signal"].to_list() == (pred["prob"] >= meta["threshold"]).to_list()
    # scoring from a date: the same scores (features still see the whole history)
    since = datetime(2021, 6, 1, tzinfo=UTC)
    late = predict(b, bars, since=since)
    assert late.height > 0 and late.equals(pred.filter(pl.col("timestamp") >= since))
    assert meta["environment"]["torch"] == torch.__version__
    with pytest.raises(ValueError, match=r"symbols \['LTC/USDT'\] were not in training"):
        predict(b, pl.read_parquet(sample_path()).filter(pl.col("symbol") == "LTC/USDT"))
    # a tampered bundle: reordered symbols or a null in the scaler are refused, one line
    import hashlib
    import json as _json

    src = Path(summary["bundle"])
    for case in ("symbols", "scaler", "checkpoint"):
        dst = tmp_path / f"tampered_{case}"
        import shutil

        shutil.copytree(src, dst)
        m = _json.loads((dst / "bundle.json").read_text())
        if case == "symbols":
            m["symbols"].reverse()  # would silently swap the asset embeddings
        elif case == "scaler":
            m["scaler"]["center"][0] = None  # would make every prediction NaN
            body = {k: v for k, v in m.items() if k != "checksum"}
            m["checksum"] = hashlib.sha256(
                _json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
        (dst / "bundle.json").write_text(_json.dumps(m))
        if case == "checkpoint":
            (dst / m["checkpoints"][1]["file"]).write_bytes(b"truncated")
        with pytest.raises(ValueError) as exc:
            load_bundle(dst)
        msg = str(exc.value)
        assert "\n" not in msg and str(dst) in msg
        assert {
            "symbols": "edited after it was written",
            "scaler": "scaler.center[0]: got None, expected a finite number",
            "checkpoint": "changed after the bundle was written",
        }[case] in msg


def test_a_multi_timeframe_set_trains_and_scores_through_its_bundle(tmp_path: Path) -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(["BTC/USDT", "ETH/USDT"]))
    cfg = SupervisedConfig.model_validate(
        {
            "output_dir": str(tmp_path),
            "feature_set": "nn23+4h",
            "windows": {"lookback": 4, "label": "forward:h=4"},
            "model": "mlp",
            "model_params": {"hidden": [8]},
            "train": {"epochs": 1, "batch_size": 1024},
        }
    )
    summary = train_supervised(cfg, InMemoryTracker(), bars=bars)
    b = load_bundle(Path(summary["bundle"]))
    names = list(b.meta["feature_names"])
    assert len(names) == 46 and names[23] == "logret_1@4h" and b.meta["feature_set"] == "nn23+4h"
    data = prepare_windows(cfg, bars, torch.device("cpu"))
    assert data.splits["train"].x.shape[-1] == 46
    pred = predict(b, bars)
    assert pred.height > 0 and pred["prob"].is_between(0, 1).all()
