"""A ``paper run --replay`` session is the backtest of the same policy, period and fees: the
same fills (bar, symbol, side, units, price, fee) and the same equity at every bar, for a
benchmark, an RL (MLP) bundle, an FT bundle, an RL ensemble and a supervised signal bundle.
The backtest (``workflows.backtest.evaluate``) is the independent side: it never touches a
broker, a state file or the runner."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from cappuccino.bundles import load_policy
from cappuccino.bundles.ensemble import write_ensemble_meta
from cappuccino.bundles.rl import save_bundle
from cappuccino.config.rl import PPOSettings
from cappuccino.datasets.market import load_market
from cappuccino.live.state import SessionState
from cappuccino.market import MarketRules
from cappuccino.training.rl.ppo import build_policy
from cappuccino.workflows.backtest import evaluate
from cappuccino.workflows.paper import PaperSettings, build_runner

from ..training.rl.helpers import make_env, period_of

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
START, END = datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 6, 8, tzinfo=UTC)
RULES = MarketRules(min_order_notional=50.0, slippage_rate=0.0005)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cappuccino.data.importing import import_files
    from cappuccino.data.sample import sample_path
    from cappuccino.data.store import ParquetStore

    root = tmp_path_factory.mktemp("paper") / "store"
    import_files([sample_path()], ParquetStore(root))
    return root


def _rl_bundle(store: Path, out: Path, seed: int, ft: dict[str, Any] | None = None) -> Path:
    data = load_market(store, "1h", SYMBOLS, "cappuccino14")
    train = data.between(None, datetime(2021, 5, 1, tzinfo=UTC))
    env = make_env(train, lookback=3, rules=RULES)
    torch.manual_seed(seed)
    net = build_policy(env, PPOSettings(hidden_sizes=[16], ft=ft))
    # a random actor holds near-equal weights; push its mean apart so that it trades
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4.0)
    return save_bundle(out, net, data=train, env_settings=env.settings, rules=env.rules,
                       scaler=env.scaler, config={}, history=[],
                       train_period=period_of(train))  # fmt: skip


def _replay(store: Path, state: Path, policy: str, **kw: Any) -> Any:
    s = PaperSettings(policy=policy, broker="sim", state=state, store=store,
                      symbols=kw.pop("symbols", SYMBOLS), replay=(START, END), **kw)  # fmt: skip
    runner = build_runner(s)
    summary = runner.run()
    return runner, summary


def _fills(state: Path) -> pl.DataFrame:
    st = SessionState.reader(state)
    rows = [{"timestamp": f.at, "symbol": f.symbol, "side": f.side, "units": f.qty,
             "price": f.price, "fee": f.fee} for f in st.fills()]  # fmt: skip
    return pl.DataFrame(rows).sort(["timestamp", "symbol"]) if rows else pl.DataFrame()


def _assert_same(state: Path, ev: Any) -> None:
    bt = ev.policy
    st = SessionState.reader(state)
    eq = st.equity_rows()
    ts = np.array([int(r.bar.timestamp() * 1000) for r in eq])
    np.testing.assert_array_equal(ts, bt.timestamps)
    np.testing.assert_allclose([r.equity for r in eq], bt.equity, rtol=1e-9, atol=0)
    trades = bt.trades_frame().with_columns(pl.col("timestamp").dt.cast_time_unit("us"))
    fills = _fills(state)
    assert fills.height == trades.height > 0
    assert fills["symbol"].to_list() == trades["symbol"].to_list()
    assert fills["side"].to_list() == trades["side"].to_list()
    assert (
        fills["timestamp"].dt.epoch("ms").to_list() == trades["timestamp"].dt.epoch("ms").to_list()
    )
    for col in ("units", "price", "fee"):
        np.testing.assert_allclose(fills[col].to_numpy(), trades[col].to_numpy(), rtol=1e-9)


def test_a_benchmark_replay_is_its_backtest(store: Path, tmp_path: Path) -> None:
    _, summary = _replay(store, tmp_path / "s.db", "equal_weight:24", fee="0.2%")
    data = load_market(store, "1h", SYMBOLS, None)
    rules = MarketRules().with_fee("0.2%")
    ev = evaluate(data, "equal_weight:24", start=START, end=END, rules=rules, benchmarks=[])
    _assert_same(tmp_path / "s.db", ev)
    assert summary.final_equity == pytest.approx(ev.policy.equity[-1], rel=1e-12)
    assert summary.bars_processed == ev.policy.equity.size
    assert summary.orders_submitted == ev.policy.trades_frame().height


def test_rl_mlp_ft_and_ensemble_replays_are_their_backtests(store: Path, tmp_path: Path) -> None:
    data = load_market(store, "1h", SYMBOLS, "cappuccino14")
    mlp = _rl_bundle(store, tmp_path / "mlp", 1)
    ft = _rl_bundle(store, tmp_path / "ft", 2, ft={"d_token": 8, "n_heads": 2, "d_out": 8,
                                                  "n_blocks": 1})  # fmt: skip
    ens = tmp_path / "ens"
    for i, src in enumerate((mlp, _rl_bundle(store, tmp_path / "m2", 3))):
        shutil.copytree(src, ens / "members" / str(i))
    write_ensemble_meta(ens, kind="rl", study="t", metric="sharpe",
                        members=[{"trial": 0, "value": 1.0}, {"trial": 1, "value": 0.5}])  # fmt: skip
    for name, path in (("mlp", mlp), ("ft", ft), ("ensemble", ens)):
        state = tmp_path / f"{name}.db"
        _replay(store, state, str(path))
        ev = evaluate(data, load_policy(path), start=START, end=END, benchmarks=[])
        _assert_same(state, ev)


def test_a_supervised_signal_replay_is_its_signal_backtest(store: Path, tmp_path: Path) -> None:
    from cappuccino.bundles.supervised import load_bundle
    from cappuccino.cli.main import app
    from cappuccino.config.supervised import SignalBacktestSettings
    from cappuccino.data.store import ParquetStore
    from cappuccino.workflows.supervised import backtest_signals

    from ..test_cli import run_json

    _ = app
    doc = run_json(
        "train", "--set", f"data.store={store}", "--set", f"output_dir={tmp_path / 'run'}",
        "--set", f"data.symbols=[{','.join(SYMBOLS)}]", "--set", "train.epochs=1",
        "--set", "windows.lookback=4", "--set", "tracking_uri=null",
        "--set", "backtest.enabled=false",
    )  # fmt: skip
    bundle = load_bundle(Path(doc["bundle"]))
    state = tmp_path / "sup.db"
    _replay(store, state, doc["bundle"])
    bars = ParquetStore(store).read_universe(bundle_tf(bundle), SYMBOLS)
    ev = backtest_signals(bundle, bars, SignalBacktestSettings(benchmarks=[]), start=START,
                          end=END)  # fmt: skip
    _assert_same(state, ev)


def bundle_tf(bundle: Any) -> Any:
    from cappuccino.data.schema import Timeframe

    return Timeframe.parse(bundle.meta["timeframe"])


def test_a_resumed_replay_equals_an_uninterrupted_one(store: Path, tmp_path: Path) -> None:
    _, whole = _replay(store, tmp_path / "a.db", "equal_weight:6")
    parts = []
    for _ in range(4):
        _, part = _replay(store, tmp_path / "b.db", "equal_weight:6", max_bars=40)
        parts.append(part)
    _, rest = _replay(store, tmp_path / "b.db", "equal_weight:6")
    assert [p.bars_processed for p in parts] == [40] * 4
    assert rest.bars_processed == whole.bars_processed - 160
    assert rest.final_equity == whole.final_equity
    assert _fills(tmp_path / "a.db").equals(_fills(tmp_path / "b.db"))


def test_zero_trades_pnl_equals_the_cash_benchmark_exactly(store: Path, tmp_path: Path) -> None:
    from cappuccino.monitoring.paper import session_status

    _replay(store, tmp_path / "c.db", "cash")
    doc = session_status(tmp_path / "c.db")
    pnl = doc["pnl"]
    assert pnl["pnl"] == pnl["benchmarks"]["cash"]["pnl"] == 0.0
    assert pnl["equity"] == doc["starting_equity"] == MarketRules().initial_cash
    assert doc["health"]["status"] == "stopped" and doc["orders"]["total"] == 0
