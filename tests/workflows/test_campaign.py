"""The baseline campaign: same data and seeds for every model, one table."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from cappuccino.config.supervised import SupervisedConfig
from cappuccino.data.sample import sample_path
from cappuccino.tracking import InMemoryTracker
from cappuccino.workflows.campaign import campaign_configs, run_campaign, write_campaign


def test_campaign_averages_seeds_and_writes_its_table(tmp_path: Path) -> None:
    bars = pl.read_parquet(sample_path()).filter(pl.col("symbol") == "BTC/USDT")
    base = SupervisedConfig.model_validate(
        {
            "output_dir": str(tmp_path),
            "windows": {"lookback": 4},
            "train": {"epochs": 1},
            "backtest": {"benchmarks": ["cash", "buy_and_hold"]},
        }
    )
    tracker = InMemoryTracker()
    configs = campaign_configs(
        base,
        {"mlp": {"model_params": {"hidden": [8]}},
         # its own lookback, loss and feature set; its split and label must stay the campaign's
         "cnn_lstm": {"model_params": {"filters": 4}, "windows": {"lookback": 6, "label":
                      "forward:h=6"}, "train": {"loss": "focal"}, "feature_set": "nn23"}},
        ["train.epochs=1"],
    )  # fmt: skip
    assert configs["cnn_lstm"].windows.label == base.windows.label
    assert (configs["cnn_lstm"].windows.lookback, configs["cnn_lstm"].train.loss) == (6, "focal")
    rows = run_campaign(configs, seeds=[0, 1], bars=bars, tracker=tracker)
    assert [r["model"] for r in rows] == ["mlp", "cnn_lstm"]
    runs = [(r.tags["model_type"], r.name.split("_seed")[1][0]) for r in tracker.runs.values()]
    assert runs == [("mlp", "0"), ("mlp", "1"), ("cnn_lstm", "0"), ("cnn_lstm", "1")]
    # the row is the mean of the two seeds' test metrics, read back from their bundles
    aucs = [
        json.loads((Path(b) / "bundle.json").read_text())["metrics"]["test"]["roc_auc"]
        for b in rows[0]["bundles"]
    ]
    assert rows[0]["test_roc_auc"] == pytest.approx(sum(aucs) / 2)
    # mlp on 4 bars x 23 features + an 8-wide embedding of 1 asset: linear (92 + 8) x 8 + 8,
    # batch norm 2 x 8, embedding 1 x 8, head 8 + 1
    assert rows[0]["parameters"] == 100 * 8 + 8 + 16 + 8 + 9
    # the same split dates for every model, whatever its lookback: test windows end in
    # the same bars (the longer lookback loses windows only at the split's start)
    splits = [
        json.loads((Path(r["bundles"][0]) / "bundle.json").read_text())["data"]["splits"]
        for r in rows
    ]
    assert all(
        splits[0][s][k] == splits[1][s][k]
        for s in ("train", "val", "test")
        for k in ("start", "end")
    )
    assert rows[0]["test_windows"] - rows[1]["test_windows"] == 2  # lookback 6 vs 4
    # each run's test-period signals were traded; the row holds the mean over seeds
    bt = [json.loads((Path(b).parent / "backtest" / "metrics.json").read_text())
          for b in rows[0]["bundles"]]  # fmt: skip
    assert rows[0]["bt_sharpe"] == pytest.approx((bt[0]["sharpe"] + bt[1]["sharpe"]) / 2)
    assert rows[0]["bt_hold_bars"] == 24  # the label's horizon (forward:h=24)
    test_split = json.loads((Path(rows[0]["bundles"][0]) / "bundle.json").read_text())["data"]
    assert bt[0]["period"]["start"] == test_split["splits"]["test"]["start"]
    assert rows[0]["bt_benchmarks"]["buy_and_hold"] == {
        k: bt[0]["benchmarks"]["buy_and_hold"][k] for k in rows[0]["bt_benchmarks"]["buy_and_hold"]
    }
    assert all(Path(p).is_file() for p in rows[0]["bt_reports"])
    paths = write_campaign(rows, tmp_path / "out", context={"description": "test"})
    md = Path(paths["markdown"]).read_text()
    assert "| model | parameters |" in md and "| cnn_lstm |" in md
    assert "| benchmark: buy_and_hold |" in md and f"| {rows[1]['bt_degenerate']}/2 |" in md
    html = Path(paths["html"]).read_text()
    assert "<td>mlp</td>" in html and "<td>benchmark: cash</td>" in html
