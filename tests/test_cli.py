"""The CLI end to end: JSON documents, tables, exit codes and error messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cappuccino.cli.main import app
from tests.conftest import BACKTEST_JSON_KEYS, shared_file

runner = CliRunner()


def run_json(*args: str) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_data_import_reports_btc_defects_and_reimport_is_a_no_op(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    doc = run_json("data", "import", str(shared_file("BTCUSDT")), "--store", store)
    (btc,) = doc["symbols"]
    assert {
        k: btc[k]
        for k in (
            "symbol",
            "rows_read",
            "rows_stored",
            "duplicates_removed",
            "duplicates_conflicting",
            "gaps",
            "missing_bars",
        )
    } == {
        "symbol": "BTC/USDT",
        "rows_read": 36_565,
        "rows_stored": 33_916,
        "duplicates_removed": 2_649,
        "duplicates_conflicting": 2_649,
        "gaps": 8,
        "missing_bars": 16,
    }
    assert btc["first"].startswith("2017-08-17T04:00") and btc["last"].startswith(
        "2021-06-30T23:00"
    )
    again = run_json("data", "import", str(shared_file("BTCUSDT")), "--store", store)
    assert again["symbols"][0]["rows_new"] == 0 and again["symbols"][0]["rows_stored"] == 33_916
    info = run_json("data", "info", "--store", store)
    assert [(p["symbol"], p["rows"]) for p in info["partitions"]] == [("BTC/USDT", 33_916)]


def test_table_output_and_gap_fill_policy(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "data",
            "import",
            str(shared_file("ADAUSDT")),
            "--store",
            str(tmp_path),
            "--on-gap",
            "fill",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ADA/USDT" in res.stdout and "7,993" in res.stdout  # 7,981 + 12 filled bars


def test_bad_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount\n"
        "1625094000000,2021-06-30 23:00:00,BTC/USDT,1,2,0.5,oops,10,15,3\n"
    )
    res = runner.invoke(app, ["data", "import", str(bad), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert f"{bad}:2" in res.output and "oops" in res.output
    assert not (tmp_path / "s").exists()  # nothing written
    res = runner.invoke(
        app, ["data", "import", str(bad), "--store", str(tmp_path / "s"), "--on-gap", "sometimes"]
    )
    assert res.exit_code == 2 and "on_gap" in res.output


def test_sample_features_build_audit_and_list(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    doc = run_json("data", "sample", "--store", store)
    assert len(doc["symbols"]) == 7
    out = tmp_path / "f.parquet"
    doc = run_json(
        "features",
        "build",
        "--store",
        store,
        "--feature-set",
        "price_action14",
        "--symbols",
        "btcusdt",
        "--symbols",
        "ETH/USDT",
        "--label",
        "forward:h=12,fee=0.001",
        "--label",
        "triple:tp=0.02,sl=0.01,h=6",
        "--out",
        str(out),
    )
    frame = pl.read_parquet(out)
    assert frame.columns[:2] == ["timestamp", "symbol"]
    assert frame.columns[2:16] == [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "rsi_14",
        "atr_14",
        "ema_50",
        "ema_200",
        "bb_middle",
        "bb_upper",
        "bb_lower",
        "bb_width",
        "bb_percent",
    ]
    assert frame.columns[16:] == [
        "label_fwd_return_12",
        "label_buy_12",
        "label_tb_6",
        "label_tb_bars_6",
        "label_tb_return_6",
    ]
    assert sorted(frame["symbol"].unique()) == ["BTC/USDT", "ETH/USDT"]
    assert doc["label_rows_dropped"] == {"BTC/USDT": 12, "ETH/USDT": 12}
    assert doc["rows"] == frame.height and frame.null_count().sum_horizontal().item() == 0
    audit = run_json(
        "features",
        "audit",
        "--store",
        store,
        "--feature-set",
        "nn23",
        "--symbols",
        "LTC/USDT",
        "--cuts",
        "3",
    )
    assert audit["passed"] is True and audit["columns_checked"] == 23
    names = {fs["name"]: fs for fs in run_json("features", "list")["feature_sets"]}
    assert set(names) == {"cappuccino14", "price_action14", "nn23"}
    assert names["nn23"]["columns"] == 23


def test_unknown_symbol_and_feature_set_are_clear(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    runner.invoke(app, ["data", "sample", "--store", store])
    res = runner.invoke(
        app,
        [
            "features",
            "build",
            "--store",
            store,
            "--feature-set",
            "nn23",
            "--symbols",
            "DOGE/USDT",
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert res.exit_code == 2 and "DOGE/USDT" in res.output
    res = runner.invoke(
        app,
        [
            "features",
            "build",
            "--store",
            store,
            "--feature-set",
            "nn99",
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert res.exit_code == 2 and "nn99" in res.output


def test_demo_end_to_end_fast(tmp_path: Path, mlflow_store: Callable[[Path], str]) -> None:
    """Every stage of the demo, at its smallest (two pairs), with the table output: the
    default suite's end-to-end test (the full-size one, seven pairs, is marked slow)."""
    out = tmp_path / "demo"
    mlflow_store(out / "mlflow.db")  # the demo's own store, its schema already migrated
    res = runner.invoke(app, [
        "demo", "--set", f"output_dir={out}", "--set", "features.audit_cuts=2",
        "--set", "data.symbols=[BTC/USDT,ETH/USDT]",
        "--set", "supervised.train.epochs=1", "--set", "rl.ppo.total_timesteps=2048",
        "--set", "tune.n_trials=1", "--set", "tune.epochs=1", "--set", "tune.warm_trials=1",
        "--set", "compare.arms=[mlp,ft_transfer]", "--set", "compare.ppo.total_timesteps=1024",
        "--set", "compare.pretrain.epochs=1", "--set", "compare.eval_points=0",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    for title in ("lookahead audit (cappuccino14): PASS",
                  "lookahead audit (cappuccino14+4h+1d): PASS (26 cut points, 42 columns)",
                  "MLflow run demo_supervised_mlp_default_",
                  "mlp test-period signals through the market core",
                  "PPO vs benchmarks, out of sample 2021-04-02 .. 2021-06-30",
                  "Optuna study of mlp", "A/B out of sample 2021-04-02 .. 2021-06-30",
                  "ft_transfer: encoder pretrained on 4h bars, fine-tuned on 1h"):  # fmt: skip
        assert title in res.stdout, title
    doc = json.loads((out / "summary.json").read_text())
    btc = next(r for r in doc["summary"] if r["symbol"] == "BTC/USDT")
    assert btc["stored"] == 8_004 and btc["filled"] == btc["missing"] == 12
    # the store holds the resampled 4h and 1d bars the summary counts (complete buckets)
    from cappuccino.data.schema import Timeframe
    from cappuccino.data.store import ParquetStore

    for tf in ("4h", "1d"):
        rows = [r for r in doc["resampled"] if r["target"] == tf]
        assert {r["symbol"] for r in rows} == {"BTC/USDT", "ETH/USDT"}
        stored = ParquetStore(out / "store").read(Timeframe.parse(tf))
        assert stored.height == sum(r["complete"] for r in rows) > 0
        assert all(r["incomplete"] > 0 for r in rows)  # the 12 missing hours' buckets
    assert "resampled (complete buckets only): 4h: " in res.stdout
    assert doc["supervised"]["epochs_run"] == 1 and doc["rl"]["train"]["timesteps"] == 2048
    assert doc["tune"]["finished"] == 1 and set(doc["compare"]["arms"]) == {"mlp", "ft_transfer"}
    # the warm-started study ran the first study's trial first, with its values
    w = doc["tune"]["warm"]
    assert w["warm_start"]["enqueued"] == [doc["tune"]["best_trial"]] and w["finished"] == 1
    assert "warm-started study demo_warm: 1 of study demo's top trials run first" in res.stdout
    assert doc["compare"]["period"] == doc["rl"]["test_period"]
    for path in (doc["supervised"]["backtest"]["outputs"]["report"],
                 doc["rl"]["outputs"]["report"], doc["compare"]["report"]):  # fmt: skip
        assert Path(path).is_file()
    paper = doc["rl"]["paper"]
    assert paper["equals_backtest"]["equal"] is True
    assert (
        paper["run"]["bars_processed"] == paper["equals_backtest"]["backtest_bars"] == 21 * 24 + 1
    )
    assert paper["status"]["health"]["status"] == "stopped"
    assert "the paper session EQUALS the backtest of the same bars" in res.stdout
    # every training run writes its torchinfo summary (the tracked ones also log it)
    assert "Total params:" in (out / "supervised" / "model_summary.txt").read_text()
    assert "ActorCritic" in (out / "rl" / "model_summary.txt").read_text()
    # the monitoring step: the snapshot of the demo's study, session and runs
    mon = doc["monitoring"]
    assert mon["status"] == "ok", mon["reasons"]
    page = Path(mon["dashboard"]).read_text()
    assert "Paper: " in page and "Study: demo" in page and "MLflow runs" in page
    report = Path(mon["status_report"]).read_text()
    assert "## Next actions" in report and "A/B campaign: arms out of sample" in report
    assert mon["live_dashboard"].startswith("cappuccino dashboard --storage sqlite:///")
    # the A/B report explains its FT arm; the dashboard shows it; `rl explain` on its own
    e = doc["compare"]["explanation"]
    assert e["arm"] == "ft_transfer" and e["tokens"][0]["rank"] == 1
    assert "Explanation: " in page and "--explain " in mon["live_dashboard"]
    assert "Which tokens drive ft_transfer" in Path(doc["compare"]["report"]).read_text()
    assert doc["compare"]["transfer"]["from"] == "4h"
    bundle = next((out / "compare" / "runs" / "ft_transfer").glob("seed*/bundle"))
    ex = runner.invoke(app, ["rl", "explain", str(bundle), "--store", str(out / "store"),
                             "--max-bars", "32", "--out", str(tmp_path / "x"), "--json"])  # fmt: skip
    assert ex.exit_code == 0, ex.stderr
    x = json.loads(ex.stdout)
    assert x["bars"] == 32 and len(x["tokens"]) == 2 * 14 + 1 + 2
    assert x["tokens"][0]["attention"] is not None  # an FT policy: [CLS] attention too
    for f in ("attention", "gradients", "html"):
        assert Path(x["outputs"][f]).is_file()
    assert "live dashboard (http://127.0.0.1:8050/): cappuccino dashboard" in res.stdout


@pytest.mark.slow
def test_demo_runs_and_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    quick = [
        "--set", "features.audit_cuts=2", "--set", "rl.ppo.total_timesteps=4096",
        "--set", "supervised.train.epochs=1", "--set", "tune.n_trials=2",
        "--set", "tune.epochs=2",
    ]  # fmt: skip
    ab_quick = [
        "--set", "compare.arms=[mlp,ft_frozen]", "--set", "compare.ppo.total_timesteps=1024",
        "--set", "compare.pretrain.epochs=1", "--set", "compare.eval_points=1",
    ]  # fmt: skip
    doc = run_json("demo", "--set", f"output_dir={out}", *quick, "--set", "compare.enabled=false")
    assert doc["compare"] is None
    assert doc["audit"]["passed"] is True
    assert {r["symbol"] for r in doc["summary"]} == {
        "BTC/USDT",
        "ETH/USDT",
        "LTC/USDT",
        "ADA/USDT",
        "BNB/USDT",
        "XRP/USDT",
        "LINK/USDT",
    }
    btc = next(r for r in doc["summary"] if r["symbol"] == "BTC/USDT")
    assert btc["stored"] == 8_004 and btc["filled"] == btc["missing"] == 12
    assert btc["rows"] == 8_004 + 12 - 63 - 24
    assert (out / "features.parquet").is_file() and (out / "summary.json").is_file()
    assert json.loads((out / "config.json").read_text())["seed"] == 0
    sv = doc["supervised"]
    assert sv["epochs_run"] == 1 and sv["model"] == "mlp" and sv["run_id"]
    assert sv["tracking_uri"] == f"sqlite:///{(out / 'mlflow.db').resolve()}"
    assert (out / "mlflow.db").is_file() and (Path(sv["bundle"]) / "model.pt").is_file()
    assert (Path(sv["bundle"]) / "figures" / "roc_test.png").is_file()
    assert list((out / "mlartifacts").rglob("bundle/figures/pr_test.png"))  # logged to MLflow
    bt = sv["backtest"]
    assert bt["hold_bars"] == 24 and bt["period"]["end"] == "2021-06-29T23:00:00+00:00"
    assert sorted(bt["benchmarks"]) == ["buy_and_hold", "cash", "equal_weight:24",
                                        "single:BTC/USDT"]  # fmt: skip
    assert Path(bt["outputs"]["report"]).is_file()
    st = doc["tune"]
    assert st["finished"] == 2 and st["counts"].get("COMPLETE", 0) >= 1
    assert (Path(st["best_bundle"]) / "model.pt").is_file()
    rl = doc["rl"]
    assert rl["train"]["timesteps"] == 4096
    assert rl["train"]["train_period"]["end"] == "2021-03-31T23:00:00+00:00"
    assert rl["test_period"]["start"] == "2021-04-02T00:00:00+00:00"  # 24-bar embargo
    assert rl["test_period"]["end"] == "2021-06-30T23:00:00+00:00"
    assert rl["test_period"]["adjusted"] == []
    names = [r["policy"] for r in rl["metrics"]]
    assert names == ["policy", "cash", "buy_and_hold", "equal_weight:24", "single:BTC/USDT"]
    assert isinstance(rl["degenerate"]["degenerate"], bool)
    html = Path(rl["outputs"]["report"]).read_text()
    assert "Degenerate-policy check" in html and "equal_weight:24" in html
    table = runner.invoke(app, ["demo", "--set", f"output_dir={out}", *quick, *ab_quick])
    assert table.exit_code == 0 and "lookahead audit (cappuccino14): PASS" in table.stdout
    assert "PPO vs benchmarks, out of sample 2021-04-02 .. 2021-06-30" in table.stdout
    assert "MLflow run demo_supervised_mlp_default_" in table.stdout
    assert "mlp test-period signals through the market core" in table.stdout
    assert "Optuna study of mlp" in table.stdout
    assert "A/B out of sample 2021-04-02 .. 2021-06-30" in table.stdout
    ab = json.loads((out / "summary.json").read_text())["compare"]
    assert set(ab["arms"]) == {"mlp", "ft_frozen"}
    assert ab["encoder"] == str(out / "compare" / "encoder")
    assert ab["period"] == rl["test_period"]  # the same held-out bars as the PPO backtest
    assert ab["warnings"] == ["2 seeds per arm: fewer than 5, the tests have little power"]
    assert ab["verdicts"][0].startswith("ft_frozen ") and " mlp" in ab["verdicts"][0]
    assert Path(ab["report"]).is_file()


def test_rl_train_then_backtest_the_bundle(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    run_json("data", "sample", "--store", store)
    out = tmp_path / "rl"
    train = run_json(
        "rl",
        "train",
        "--set",
        f"data.store={store}",
        "--set",
        f"output_dir={out}",
        "--set",
        "data.symbols=[BTC/USDT, ETH/USDT]",
        "--set",
        "ppo.total_timesteps=1024",
        "--set",
        "ppo.n_envs=4",
        "--set",
        "ppo.n_steps=64",
        "--set",
        "ppo.minibatch_size=64",
    )
    bundle = train["bundle"]
    assert train["timesteps"] == 1024 and (Path(bundle) / "policy.pt").is_file()
    doc = run_json(
        "backtest",
        "--store",
        store,
        "--policy",
        bundle,
        "--start",
        "2021-05-01",
        "--end",
        "2021-05-31T23:00",
        "--out",
        str(tmp_path / "bt"),
        "--report",
        str(tmp_path / "r.html"),
    )
    assert doc["n_bars"] == 31 * 24 - 1 and doc["periods_per_year"] == 8760
    for key in BACKTEST_JSON_KEYS:
        assert isinstance(doc[key], float | int)
    assert set(doc["benchmarks"]) == {"cash", "buy_and_hold", "equal_weight:24", "single:BTC/USDT"}
    assert doc["benchmarks"]["cash"]["total_return"] == 0.0
    assert (tmp_path / "r.html").is_file() and (tmp_path / "bt" / "trades.parquet").is_file()
    # the bundle refuses data it was not trained on
    bad = runner.invoke(
        app, ["backtest", "--store", store, "--policy", bundle, "--symbols", "ETH/USDT", "--json"]
    )
    assert bad.exit_code == 2 and "differ from the bundle's symbols" in bad.output
    fee = run_json(
        "backtest",
        "--store",
        store,
        "--policy",
        "equal_weight:12",
        "--fee",
        "0",
        "--start",
        "2021-05-01",
        "--end",
        "2021-05-31T23:00",
        "--out",
        str(tmp_path / "b2"),
    )
    assert fee["fees_paid"] == 0.0 and fee["policy"] == "equal_weight:12"
    nope = runner.invoke(app, ["backtest", "--store", store, "--policy", "momentum", "--json"])
    assert nope.exit_code == 2 and "expected a bundle directory" in nope.output


def test_models_list_and_describe() -> None:
    names = [m["name"] for m in run_json("models", "list")["models"]]
    assert names == [
        "mlp", "lstm_attention", "gru_attention", "cnn_lstm", "price_action_transformer",
        "ft_transformer",
    ]  # fmt: skip
    doc = run_json("models", "describe", "price_action_transformer")
    assert doc["parameters"] == 406_785 and doc["config"]["d_model"] == 128
    small = run_json("models", "describe", "mlp", "--set", "hidden=[8]", "--window", "2",
                     "--features", "3", "--assets", "1", "--set", "asset_embedding=0",
                     "--set", "batch_norm=false")  # fmt: skip
    assert small["parameters"] == (2 * 3) * 8 + 8 + 8 + 1
    bad = runner.invoke(app, ["models", "describe", "mlp", "--set", "hiden=[8]", "--json"])
    assert bad.exit_code == 2 and "hiden" in bad.output


def test_train_command_writes_a_bundle(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    run_json("data", "sample", "--store", store)
    doc = run_json(
        "train", "--set", f"data.store={store}", "--set", f"output_dir={tmp_path / 'run'}",
        "--set", "data.symbols=[BTC/USDT]", "--set", "train.epochs=1",
        "--set", "windows.lookback=4", "--set", "tracking_uri=null",
    )  # fmt: skip
    assert doc["run_id"] is None and doc["best_epoch"] == 1
    assert set(doc["test"]) >= {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "f1_pos",
        "roc_auc",
        "pr_auc",
    }
    assert (Path(doc["bundle"]) / "bundle.json").is_file()
    out = tmp_path / "pred.parquet"
    pred = run_json(
        "predict", doc["bundle"], "--store", store, "--start", "2021-06-01", "--out", str(out)
    )
    frame = pl.read_parquet(out)
    assert pred["rows"] == frame.height > 0 and frame.columns == [
        "timestamp",
        "symbol",
        "prob",
        "signal",
    ]
    # reading starts at --start: the first score comes after the warm-up and a full window
    assert frame["timestamp"].min() > datetime(2021, 6, 1, tzinfo=UTC)
    assert pred["epoch"] == 1
    again = run_json("predict", doc["bundle"], "--store", store, "--start", "2021-06-01",
                     "--epoch", "1", "--out", str(tmp_path / "p1.parquet"))  # fmt: skip
    assert again["signals"] == pred["signals"]  # top-1 checkpoint = the kept model
    nope = runner.invoke(app, ["predict", doc["bundle"], "--store", store, "--epoch", "7",
                               "--out", str(tmp_path / "p7.parquet")])  # fmt: skip
    assert nope.exit_code == 2 and "no checkpoint of epoch 7; kept: [1]" in nope.output
    bad = runner.invoke(app, ["train", "--set", "model=xgboost", "--set", f"data.store={store}"])
    assert bad.exit_code == 2 and "xgboost" in bad.output


def test_campaign_baseline_writes_the_comparison(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    run_json("data", "sample", "--store", store)
    doc = run_json(
        "campaign", "baseline", "--models", "mlp,gru_attention", "--seeds", "0",
        "--set", f"data.store={store}", "--set", f"output_dir={tmp_path / 'c'}",
        "--set", "data.symbols=[ETH/USDT]", "--set", "train.epochs=1",
        "--set", "windows.lookback=4", "--set", "tracking_uri=null",
    )  # fmt: skip
    assert [r["model"] for r in doc["rows"]] == ["mlp", "gru_attention"]
    # gru_attention takes its model_params from configs/train/gru_attention.yaml (64 x 2 heads)
    assert (
        json.loads((Path(doc["rows"][1]["bundles"][0]) / "bundle.json").read_text())[
            "model_params"
        ]["hidden"]
        == 64
    )
    assert Path(doc["outputs"]["html"]).is_file() and Path(doc["outputs"]["markdown"]).is_file()
    bad = runner.invoke(
        app, ["campaign", "baseline", "--models", "svm", "--set", f"data.store={store}"]
    )
    assert bad.exit_code == 2 and "svm" in bad.output


def test_rl_pretrain_encoder_then_a_mismatched_run_is_refused(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    run_json("data", "sample", "--store", store)
    enc = tmp_path / "enc"
    common = ["--set", f"data.store={store}", "--set", "data.symbols=[BTC/USDT, ETH/USDT]",
              "--set", "split.train_start=2021-02-01T00:00:00Z",
              "--set", "split.train_end=2021-03-01T00:00:00Z"]  # fmt: skip
    doc = run_json("rl", "pretrain-encoder", *common, "--set", f"output_dir={enc}",
                   "--set", "env.lookback=2", "--set", "encoder.d_token=8",
                   "--set", "encoder.n_heads=2", "--set", "pretrain.epochs=1")  # fmt: skip
    assert doc["epochs_run"] == 1 and doc["val_baseline_loss"] > 0
    assert (enc / "best_encoder.pt").is_file() and (enc / "encoder.json").is_file()
    res = runner.invoke(app, ["rl", "train", *common, "--set", f"output_dir={tmp_path / 'rl'}",
                              "--set", "env.lookback=3", "--set", f"ppo.ft.pretrained={enc}",
                              "--set", "ppo.ft.d_token=8", "--set", "ppo.ft.n_heads=2"])  # fmt: skip
    assert res.exit_code == 2
    assert "lookback 2 in encoder, 3 in env" in res.output
    assert "d_token" not in res.output  # only the real mismatch is named
