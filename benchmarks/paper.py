"""Paper trading speed: the latency of one live bar, and the replay rate.

**Latency** (bar close to the last order submitted), CPU, 7 and 25 of the real Binance pairs
(``../shared/data``), an RL bundle with the default MLP actor and one with the FT-Transformer
encoder (untrained: the work per bar is the same), all on loopback fakes: the candles come
from a fake Binance (the download code, one request per symbol), the orders go to the same
fake through the ccxt adapter. Per bar: the bar becomes available at the fake, then the
feed fetches it, appends it to the store, computes the features on the bounded window
(``--history-bars``), the runner reconciles (open orders, trades, balance), decides and
submits. Side by side: the same bar with the features recomputed on the whole stored
history (the naive runner) instead of the bounded window. Target: <= 0.5 s at 7 symbols,
<= 2 s at 25.

**Replay rate** (``paper run --replay`` with the simulated broker, bars per second), side
by side with ``cappuccino backtest`` of the same policy and bars (the same computation
without the broker, the state and the journal). Target: >= 500 bars/s.

Medians of interleaved rounds. Usage: ``python -m benchmarks.paper [--bars 12] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import torch

from cappuccino.bundles.rl import save_bundle
from cappuccino.config.rl import EnvSettings, PPOSettings
from cappuccino.data.download import make_exchange
from cappuccino.data.importing import import_files
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import fit_scaler, load_market
from cappuccino.live.exchange import CcxtBroker
from cappuccino.live.feed import LiveFeed
from cappuccino.live.runner import PaperRunner
from cappuccino.live.state import SessionState
from cappuccino.live.symbols import SymbolMap
from cappuccino.market import MarketRules
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.ppo import build_policy
from cappuccino.workflows.backtest import evaluate
from cappuccino.workflows.paper import PaperSettings, build_runner

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_1h"
TF = Timeframe.parse("1h")
PARTS: dict[tuple[int, bool, bool], list[tuple[float, float]]] = {}
SAMPLE7 = ["ADA/USDT", "BNB/USDT", "BTC/USDT", "ETH/USDT", "LINK/USDT", "LTC/USDT", "XRP/USDT"]


def _store(root: Path, symbols: list[str]) -> ParquetStore:
    st = ParquetStore(root)
    files = [SHARED / f"Binance_{s.replace('/', '')}_1h.csv" for s in symbols]
    import_files(files, st)
    return st


def _bundle(store: Path, symbols: list[str], out: Path, ft: bool) -> Path:
    data = load_market(store, "1h", symbols, "cappuccino14")
    env = BatchedTradingEnv(data, settings=EnvSettings(lookback=10), rules=MarketRules(),
                            n_envs=1, scaler=fit_scaler(data))  # fmt: skip
    torch.manual_seed(0)
    ppo = PPOSettings(ft={"d_token": 32, "n_heads": 4, "d_out": 64, "n_blocks": 2} if ft else None)
    net = build_policy(env, ppo)
    from cappuccino.bundles.manifest import TrainPeriod

    d = data.describe()
    return save_bundle(out, net, data=data, env_settings=env.settings, rules=env.rules,
                       scaler=env.scaler, config={}, history=[],
                       train_period=TrainPeriod(start=d["start"], end=d["end"],
                                                n_bars=data.n_bars))  # fmt: skip


def _candles(frame: pl.DataFrame, symbol: str) -> list[list[Any]]:
    f = frame.filter(pl.col("symbol") == symbol).sort("timestamp")
    ms = f["timestamp"].dt.epoch("ms").to_list()
    return [list(r) for r in zip(ms, f["open"], f["high"], f["low"], f["close"], f["volume"],
                                 strict=True)]  # fmt: skip


def latency(symbols: list[str], ft: bool, n_bars: int, history: int, naive: bool,
            tmp: Path) -> list[float]:  # fmt: skip
    """Seconds from "bar available at the fake" to the last submit, for ``n_bars`` bars."""
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.data.exchange_server import _market
    from tests.live.fake_binance import FakeBinanceTrading

    from cappuccino.bundles import load_policy

    src = tmp / f"full{len(symbols)}"
    full = ParquetStore(src).read_universe(TF, symbols)
    end = full["timestamp"].max()
    cut = end - timedelta(hours=n_bars + 1)
    run_dir = tmp / f"run-{len(symbols)}-{ft}-{naive}-{time.monotonic_ns()}"
    store = ParquetStore(run_dir / "store")
    store.upsert(full.filter(pl.col("timestamp") <= cut), TF)
    bundle = load_policy(tmp / f"bundle{len(symbols)}{'ft' if ft else ''}")
    fake = FakeBinanceTrading([], int((cut + timedelta(hours=1, seconds=11)).timestamp() * 1000),
                              cash=1e6)  # fmt: skip
    fake.candles_by_symbol = {s.replace("/", ""): _candles(full, s) for s in symbols}
    last = full.filter(pl.col("timestamp") == end)
    fake.prices = {
        r["symbol"].replace("/", ""): float(r["close"]) for r in last.iter_rows(named=True)
    }
    markets = [_market(s.split("/")[0], "USDT") for s in symbols]
    base_route = fake.route

    def route(path: str, q: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/v3/exchangeInfo":
            return 200, {"timezone": "UTC", "serverTime": fake.now_ms, "rateLimits": [],
                         "exchangeFilters": [], "symbols": markets}  # fmt: skip
        return base_route(path, q)

    fake.route = route  # type: ignore[method-assign]
    os.environ["CAPPUCCINO_BINANCE_API_KEY"], os.environ["CAPPUCCINO_BINANCE_SECRET"] = (
        "key-id",
        "s",
    )
    out = []
    with fake:
        ex = make_exchange("binance", base_url=fake.url)
        ex.enableRateLimit = False
        feed = LiveFeed(store=store.root, exchange=ex, exchange_id="binance",
                        symbols=tuple(symbols), timeframe=TF, feature_set="cappuccino14",
                        history_bars=10**7 if naive else history, grace_s=10.0,
                        lookback=10, sleep=lambda s: None)  # fmt: skip
        broker = CcxtBroker.from_env("binance", SymbolMap.parse(symbols), url=fake.url)
        broker.ex.enableRateLimit = False
        state = SessionState(run_dir / "s.db", "paper")
        runner = PaperRunner(state=state, broker=broker, feed=feed, policy=bundle.policy,
                             policy_name="bench", symbols=tuple(symbols), timeframe="1h",
                             rules=bundle.rules, cash_buffer=0.01)  # fmt: skip
        runner.start()
        it = iter(feed.bars(None))
        bar = cut
        for _ in range(n_bars):
            closes = full.filter(pl.col("timestamp") == bar)  # the broker trades at the close
            fake.prices = {r["symbol"].replace("/", ""): float(r["close"])
                           for r in closes.iter_rows(named=True)}  # fmt: skip
            t0 = time.perf_counter()  # the bar is available at the fake from here
            cb = next(it)
            t1 = time.perf_counter()
            runner.process(cb)
            out.append(time.perf_counter() - t0)
            PARTS.setdefault((len(symbols), ft, naive), []).append((t1 - t0, out[-1] - (t1 - t0)))
            fake.now_ms += 3_600_000  # the next bar closes
            bar += timedelta(hours=1)
    return out


def replay_rate(store: Path, symbols: list[str], policy: str, tmp: Path) -> tuple[float, float]:
    """Bars per second: ``paper run --replay`` (sim broker) and ``backtest``, same bars."""
    start, end = datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 6, 1, tzinfo=UTC)
    state = tmp / f"replay-{time.monotonic_ns()}.db"
    runner = build_runner(PaperSettings(policy=policy, broker="sim", state=state, store=store,
                                        symbols=symbols, replay=(start, end)))  # fmt: skip
    t0 = time.perf_counter()
    summary = runner.run()
    paper = summary.bars_processed / (time.perf_counter() - t0)
    data = load_market(store, "1h", symbols, None if not Path(policy).is_dir() else "cappuccino14")
    from cappuccino.bundles import load_policy

    target: Any = load_policy(Path(policy)) if Path(policy).is_dir() else policy
    t0 = time.perf_counter()
    ev = evaluate(data, target, start=start, end=end, benchmarks=[])
    bt = ev.policy.equity.size / (time.perf_counter() - t0)
    assert abs(ev.policy.equity[-1] / summary.final_equity - 1) < 1e-9  # the same computation
    return paper, bt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--history-bars", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"python {platform.python_version()}, torch {torch.__version__}, CPU, {args.threads} "
          f"thread(s); {args.bars} live bars per run, median of {args.rounds} "
          "interleaved rounds")  # fmt: skip
    all25 = sorted(p.name.split("_")[1].replace("USDT", "/USDT") for p in SHARED.glob("*.csv"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n, syms in ((7, SAMPLE7), (25, all25)):
            _store(tmp / f"full{n}", syms)
            _bundle(tmp / f"full{n}", syms, tmp / f"bundle{n}", ft=False)
            _bundle(tmp / f"full{n}", syms, tmp / f"bundle{n}ft", ft=True)
        cases = [(n, syms, ft) for n, syms in ((7, SAMPLE7), (25, all25)) for ft in (False, True)]
        got: dict[tuple[int, bool, bool], list[float]] = {}
        for _ in range(args.rounds):
            for n, syms, ft in cases:
                for naive in (False, True):
                    got.setdefault((n, ft, naive), []).extend(
                        latency(syms, ft, args.bars, args.history_bars, naive, tmp)
                    )
        print("\nlatency, bar available at the fake -> last order submitted (s):")
        print(f"{'symbols':>7} {'policy':>6} {'bounded window':>15} {'p90':>6} "
              f"{'full history':>13} {'ratio':>6} {'target':>7}")  # fmt: skip
        for n, _, ft in cases:
            a, b = got[(n, ft, False)], got[(n, ft, True)]
            ma, mb = statistics.median(a), statistics.median(b)
            p90 = sorted(a)[int(0.9 * (len(a) - 1))]
            fetch = statistics.median(x[0] for x in PARTS[(n, ft, False)])
            rest = statistics.median(x[1] for x in PARTS[(n, ft, False)])
            print(f"{n:>7} {'FT' if ft else 'MLP':>6} {ma:>15.3f} {p90:>6.3f} {mb:>13.3f} "
                  f"{mb / ma:>5.1f}x {0.5 if n == 7 else 2.0:>7}   (fetch + features "
                  f"{fetch:.3f}, reconcile + decide + submit {rest:.3f})")  # fmt: skip
        print(
            "\nreplay rate, sim broker vs backtest, 7 symbols, 2021-03-01 .. 2021-06-01 (bars/s):"
        )
        rl = str(tmp / "bundle7")
        for policy in ("equal_weight:24", "equal_weight:1", rl):
            rates = [replay_rate(tmp / "full7", SAMPLE7, policy, tmp) for _ in range(args.rounds)]
            p = statistics.median(r[0] for r in rates)
            b = statistics.median(r[1] for r in rates)
            name = "RL (MLP) bundle" if policy == rl else policy
            print(
                f"  {name:>16}: paper replay {p:7.0f}, backtest {b:7.0f} ({b / p:.0f}x); target 500"
            )


if __name__ == "__main__":
    main()
