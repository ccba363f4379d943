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
from tests.conftest import sample_store

from ..training.rl.helpers import make_env, period_of

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
START, END = datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 6, 8, tzinfo=UTC)
RULES = MarketRules(min_order_notional=50.0, slippage_rate=0.0005)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_store(tmp_path_factory.mktemp("paper"))


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


def _mappo_bundle(store: Path, out: Path, seed: int) -> Path:
    from cappuccino.bundles.mappo import save_bundle as save_mappo
    from cappuccino.config.rl import MAPPOSettings
    from cappuccino.training.rl.mappo import build_multiagent
    from cappuccino.training.rl.multiagent import MultiAgentTradingEnv

    data = load_market(store, "1h", SYMBOLS, "cappuccino14")
    train = data.between(None, datetime(2021, 5, 1, tzinfo=UTC))
    rules = RULES.model_copy(update={"max_weight": 0.5})
    env = MultiAgentTradingEnv(make_env(train, lookback=3, rules=rules))
    settings = MAPPOSettings(stage="master", parent=Path("parent"), actor_hidden=[16],
                             critic_hidden=[16])  # fmt: skip
    torch.manual_seed(seed)
    net = build_multiagent(env, PPOSettings(), settings, {"source": "mlp", "hidden": [16]})
    # spread the scores and caps of a random network, so that it trades and the caps bind
    with torch.no_grad():
        for head in (net.actor.net[-1], net.master_caps.net[-1], net.master_gross):
            head.weight.normal_(0.0, 1.0)  # type: ignore[operator]
            head.bias.zero_()  # type: ignore[operator]
    return save_mappo(out, net, data=train, mappo=settings, env_settings=env.base.settings,
                      rules=rules, scaler=env.base.scaler, config={}, history=[],
                      train_period=period_of(train), encoder=None, parents=[])  # fmt: skip


def _check_caps(data: Any, pb: Any, bt: Any) -> int:
    """Every weight after a fill, valued at the fill's reference price (the open), is at most
    the master's cap for it, up to the fees and slippage paid; returns how often a cap bound.
    The portfolio before each decision is rebuilt from the backtest's fills and equity."""
    from cappuccino.market import Portfolio, master_limits
    from cappuccino.policies import MarketView

    policy = pb.policy
    policy.bind(data)
    rules = pb.rules
    f64 = torch.float64
    idx = np.searchsorted(data.timestamps, bt.timestamps)
    units = np.cumsum(bt.bought - bt.sold, axis=0)
    cash = bt.equity[1:] - (units * data.close[idx[1:]]).sum(1)
    prev_units, prev_cash, binding = np.zeros(len(SYMBOLS)), rules.initial_cash, 0
    for k in range(len(bt.bought)):
        t = int(idx[k])
        pf = Portfolio(cash=torch.tensor([prev_cash], dtype=f64),
                       units=torch.tensor(prev_units[None], dtype=f64),
                       entry_price=torch.zeros((1, len(SYMBOLS)), dtype=f64))  # fmt: skip
        close, opn = torch.tensor(data.close[t : t + 1]), data.open[t + 1]
        view = MarketView(step=k, t=torch.tensor([t]), portfolio=pf, equity=pf.equity(close),
                          close=close, fill_price=torch.tensor(data.open[t + 1 : t + 2]))  # fmt: skip
        _, master = policy.actions(view)
        _, caps = master_limits(master, rules)
        eq_after = cash[k] + (units[k] * opn).sum()
        slack = (prev_cash + (prev_units * opn).sum()) / eq_after
        w = units[k] * opn / eq_after
        assert (w <= caps[0].numpy() * slack + 1e-9).all(), (k, w, caps)
        binding += int((w > caps[0].numpy() - 1e-3).any() and units[k].any())
        prev_units, prev_cash = units[k], cash[k]
    return binding


def test_a_multiagent_replay_is_its_backtest_and_keeps_the_masters_caps(
    store: Path, tmp_path: Path
) -> None:
    data = load_market(store, "1h", SYMBOLS, "cappuccino14")
    path = _mappo_bundle(store, tmp_path / "mappo", 4)
    state = tmp_path / "mappo.db"
    _replay(store, state, str(path))
    pb = load_policy(path)
    assert pb.kind == "mappo"
    ev = evaluate(data, pb, start=START, end=END, benchmarks=[])
    _assert_same(state, ev)  # the replay's fills and equity are the backtest's
    assert _check_caps(data, pb, ev.policy) > 0  # and the caps held, and bound somewhere


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
