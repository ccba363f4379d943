"""The synthetic universe: seeded and reproducible, consistent bars without gaps, each
regime's volatility and the regimes' long-run shares and durations as the model says, and
a store of its own that real bars cannot join (nor it a store of real bars)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.data.importing import import_files
from cappuccino.data.store import ParquetStore
from cappuccino.data.synthetic import (
    REGIMES,
    YEAR_MS,
    SyntheticSpec,
    market_shocks,
    regime_path,
    symbol_bars,
    symbol_parameters,
    synthetic_universe,
)
from tests.conftest import sample_store

runner = CliRunner()


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    a = synthetic_universe(SyntheticSpec(symbols=3, bars=500, seed=7))
    assert a.equals(synthetic_universe(SyntheticSpec(symbols=3, bars=500, seed=7)))
    assert not a.equals(synthetic_universe(SyntheticSpec(symbols=3, bars=500, seed=8)))
    # a symbol's bars do not depend on how many symbols are drawn
    first3 = synthetic_universe(SyntheticSpec(symbols=5, bars=500, seed=7)).filter(
        pl.col("symbol").is_in(a["symbol"].unique().to_list())
    )
    assert first3.equals(a)


def test_bars_are_consistent_gap_free_and_validate(tmp_path: Path) -> None:
    bars = synthetic_universe(SyntheticSpec(symbols=4, bars=2000, seed=1))
    assert bars["symbol"].unique().sort().to_list() == [f"SYN00{i}/USDT" for i in range(4)]
    o, h, lo, c = (bars[x].to_numpy() for x in ("open", "high", "low", "close"))
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all() and (bars["volume"].to_numpy() > 0).all()
    for _, g in bars.group_by("symbol"):
        steps = np.diff(g["timestamp"].dt.epoch("ms").to_numpy())
        assert (steps == 3_600_000).all()
        assert np.array_equal(g["open"].to_numpy()[1:], g["close"].to_numpy()[:-1])
    # the importer's validation (impossible bars are an error) finds nothing to repair
    bars.write_parquet(tmp_path / "syn.parquet")
    rep = import_files([tmp_path / "syn.parquet"], ParquetStore(tmp_path / "check"))
    rows = rep.rows()
    assert [r["rows_stored"] for r in rows] == [2000] * 4
    assert sum(r["gaps"] + r["duplicates_removed"] for r in rows) == 0


def test_each_regime_has_the_volatility_of_the_model() -> None:
    spec = SyntheticSpec(symbols=1, bars=20 * 8760, seed=3)  # 20 years of hours
    regimes, shocks = regime_path(spec), market_shocks(spec)
    bars = symbol_bars(spec, 0, regimes, shocks)
    _, beta, idio = symbol_parameters(spec, 0)
    r = np.diff(np.log(bars["close"].to_numpy()))
    dt = 3_600_000 / YEAR_MS
    for k, reg in enumerate(REGIMES):
        inside = regimes[1:] == k
        model = np.sqrt((beta**2 * reg.vol**2 + (reg.idio * idio) ** 2) * dt)
        assert np.std(r[inside]) == pytest.approx(model, rel=0.03), reg.name


def test_regime_shares_and_durations_follow_the_chain() -> None:
    # leaving regime k has probability dt / days_k per bar, to another one uniformly:
    # the long-run share of k is proportional to its mean duration
    spec = SyntheticSpec(symbols=1, bars=200 * 8760, seed=5)
    path = regime_path(spec)
    days = np.array([r.days for r in REGIMES])
    shares = np.bincount(path, minlength=len(REGIMES)) / path.size
    np.testing.assert_allclose(shares, days / days.sum(), atol=0.03)
    change = np.flatnonzero(np.diff(path)) + 1
    runs = np.diff(np.r_[0, change, path.size])
    first = path[np.r_[0, change]]
    for k, reg in enumerate(REGIMES):
        assert runs[first == k].mean() / 24 == pytest.approx(reg.days, rel=0.15), reg.name


def test_cli_writes_a_marked_store_idempotently(tmp_path: Path) -> None:
    store = tmp_path / "syn"
    args = ["data", "synthetic", "--store", str(store), "--symbols", "3", "--years", "0.1",
            "--seed", "2", "--json"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["symbols"] == 3 and doc["bars_per_symbol"] == 876 and doc["rows_new"] == 3 * 876
    assert sum(doc["regime_share"].values()) == pytest.approx(1.0)
    s = ParquetStore(store)
    assert s.synthetic == doc["spec"] and len(s.symbols(s.timeframes()[0])) == 3
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["rows_new"] == 0
    other = runner.invoke(app, [*args[:-3], "--seed", "3"])
    assert other.exit_code == 2 and "holds synthetic bars of other settings" in other.stderr


def test_real_and_synthetic_bars_never_share_a_store(tmp_path: Path) -> None:
    real = sample_store(tmp_path / "real")
    res = runner.invoke(app, ["data", "synthetic", "--store", str(real), "--symbols", "2"])
    assert res.exit_code == 2 and "holds real bars" in res.stderr
    syn = tmp_path / "syn"
    assert runner.invoke(app, ["data", "synthetic", "--store", str(syn), "--symbols", "2",
                               "--years", "0.05"]).exit_code == 0  # fmt: skip
    from cappuccino.data.sample import sample_path

    imp = runner.invoke(app, ["data", "import", str(sample_path()), "--store", str(syn)])
    assert imp.exit_code == 2 and "holds synthetic bars" in imp.stderr
    assert ParquetStore(syn).symbols(ParquetStore(syn).timeframes()[0]) == [
        "SYN000/USDT", "SYN001/USDT"]  # fmt: skip
