"""CLI edges: logs never reach stdout, a bad --log-level is one clear error, and reading a
study that does not exist is an error that creates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import polars as pl
from typer.testing import CliRunner

from cappuccino.cli.main import app

runner = CliRunner()


def test_json_is_one_document_at_debug_level_and_logs_go_to_stderr(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cappuccino.cli.main", "--log-level", "DEBUG", "data", "sample",
           "--store", str(tmp_path / "store"), "--json"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # exactly one document: json.loads refuses trailing text
    assert "symbols" in doc
    assert "INFO" in done.stderr or "DEBUG" in done.stderr  # the logs went to stderr


def test_a_bad_log_level_exits_2_naming_the_option() -> None:
    res = runner.invoke(app, ["--log-level", "BOGUS", "models", "list"])
    text = " ".join(res.output.replace("│", " ").split())  # click's error box wraps lines
    assert res.exit_code == 2
    assert "got 'BOGUS', expected one of DEBUG, INFO, WARNING, ERROR" in text
    assert "Traceback" not in res.output


def test_reading_a_study_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    url = f"sqlite:///{db}"
    for cmd in (["tune", "report"], ["tune", "best", "--out", str(tmp_path / "b")]):
        res = runner.invoke(app, [*cmd, "--study-name", "nope", "--storage", url, "--json"])
        assert res.exit_code == 2 and "no such database" in res.output, res.output
        assert not db.exists()  # no SQLite file either
    optuna.create_study(study_name="real", storage=url)
    for cmd in (["tune", "report"], ["tune", "best", "--out", str(tmp_path / "b")]):
        res = runner.invoke(app, [*cmd, "--study-name", "nope", "--storage", url, "--json"])
        assert res.exit_code == 2
        assert "--study-name: got 'nope', no such study in" in res.output and "real" in res.output
    assert optuna.get_all_study_names(url) == ["real"]  # nothing was created


def test_features_build_refuses_to_write_into_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert runner.invoke(app, ["data", "sample", "--store", str(store), "--json"]).exit_code == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    inside = store / "timeframe=1h" / "features.parquet"
    res = runner.invoke(app, ["features", "build", "--store", str(store), "--feature-set",
                              "cappuccino14", "--out", str(inside), "-s", "BTC/USDT"])  # fmt: skip
    assert res.exit_code == 2 and "inside the store" in res.output
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # nothing written
    ok = runner.invoke(app, ["features", "build", "--store", str(store), "--feature-set",
                             "cappuccino14", "--out", str(tmp_path / "f.parquet"), "-s",
                             "BTC/USDT", "--json"])  # fmt: skip
    assert ok.exit_code == 0 and (tmp_path / "f.parquet").is_file()


def test_symbols_take_comma_lists_and_repeated_flags(tmp_path: Path) -> None:
    from cappuccino.cli.render import symbol_list

    assert symbol_list(["BTC/USDT,ETH/USDT", " SOL/USDT "]) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert symbol_list([]) is None and symbol_list([","]) is None
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["data", "sample", "--store", store, "--json"]).exit_code == 0
    base = ["backtest", "--store", store, "--policy", "cash", "--start", "2021-06-20", "--json"]
    docs = []
    for flags in (["--symbols", "BTC/USDT,ETH/USDT"], ["-s", "BTC/USDT", "-s", "ETH/USDT"],
                  ["-s", "btcusdt, ETH/USDT"]):  # fmt: skip
        res = runner.invoke(app, [*base, *flags, "--out", str(tmp_path / "bt")])
        assert res.exit_code == 0, res.output
        docs.append(json.loads(res.stdout)["symbols"])
    assert docs == [["BTC/USDT", "ETH/USDT"]] * 3
    feats = runner.invoke(app, ["features", "build", "--store", store, "--feature-set",
                                "cappuccino14", "-s", "BTC/USDT,ETH/USDT", "--out",
                                str(tmp_path / "f.parquet"), "--json"])  # fmt: skip
    assert feats.exit_code == 0
    assert sorted(pl.read_parquet(tmp_path / "f.parquet")["symbol"].unique()) == ["BTC/USDT",
                                                                                "ETH/USDT"]  # fmt: skip


def test_the_command_starts_without_torch_and_the_market_package_resolves_every_name() -> None:
    """`cappuccino --help` and the data commands do not pay torch's import (seconds on a
    busy machine); the market package still gives every name it exports."""
    code = "import sys, cappuccino.cli.main; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "False"
    import cappuccino.market as market

    assert sorted(market.__all__) == sorted(market._EXPORTS)
    assert all(getattr(market, name) is not None for name in market.__all__)
