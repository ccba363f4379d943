"""``cappuccino paper run|status|orders``: paper trading through a broker, restart-safe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    STORE_HELP,
    TIMEFRAME_HELP,
    console,
    emit_json,
    err_console,
    fail_cleanly,
    parse_time,
    symbol_list,
    table,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Paper trading: `paper run` trades a policy on closed bars through a broker (sim, "
    "alpaca, ccxt:EXCHANGE) and resumes from its state file; `paper status` and `paper orders` "
    "read a session.",
)

STATE_HELP = "the session's state file (SQLite); the same file resumes the session"


@app.command("run")
@fail_cleanly
def run(
    policy: str = typer.Option(
        ...,
        "--policy",
        help="bundle directory, cash, buy_and_hold, equal_weight[:k] or single:SYMBOL",
    ),
    broker: str = typer.Option("sim", "--broker", help="sim, alpaca or ccxt:EXCHANGE"),
    state: Path = typer.Option(..., "--state", help=STATE_HELP),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", "-s", help="universe (default: the bundle's); repeat or comma-separate"
    ),
    timeframe: str = typer.Option("1h", "--timeframe", help=TIMEFRAME_HELP),
    replay: tuple[str, str] | None = typer.Option(
        None, "--replay", help="START END (ISO 8601 UTC): drive the sim broker over stored bars"
    ),
    bar_delay: float = typer.Option(0.0, "--bar-delay", help="seconds between replayed bars"),
    fee: str | None = typer.Option(None, "--fee", help="fee rate: 0.001 or 0.1% (at most 5%)"),
    max_bars: int | None = typer.Option(None, "--max-bars", help="stop after N bars (resumable)"),
    symbol_map: list[str] | None = typer.Option(
        None, "--symbol-map", help="MODEL=BROKER, e.g. BTC/USDT=BTC/USD; repeat or comma-separate"
    ),
    live: bool = typer.Option(
        False, "--live", help="trade real money: a broker's live endpoint (default: paper)"
    ),
    broker_url: str | None = typer.Option(
        None,
        "--broker-url",
        envvar="CAPPUCCINO_BROKER_URL",
        help="override the broker's API host (testing, proxies)",
    ),
    data_exchange: str = typer.Option(
        "binance", "--data-exchange", help="ccxt exchange the live bars come from"
    ),
    data_url: str | None = typer.Option(
        None,
        "--data-url",
        envvar="CAPPUCCINO_EXCHANGE_URL",
        help="override the data exchange's API host",
    ),
    history_bars: int = typer.Option(
        4000, "--history-bars", help="live: the bounded window the features are computed on"
    ),
    grace: float = typer.Option(10.0, "--grace", help="live: seconds after a bar's end to fetch"),
    cash_buffer: str | None = typer.Option(
        None,
        "--cash-buffer",
        help="share of cash kept unspent when sizing buys (orders are "
        "sized at the close): 0.01 or 1%; default 0 for sim, 1% for a real broker",
    ),
    allow_version_mismatch: bool = typer.Option(
        False, "--allow-version-mismatch", help="load a bundle written with other versions"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Trade a policy bar by bar; exit 1 when reconciliation refuses to trade, 3 when the
    broker is unreachable."""
    from cappuccino.live.runner import ReconcileError
    from cappuccino.market.rules import parse_rate
    from cappuccino.workflows.paper import PaperSettings, run_paper

    span = None
    if replay is not None:
        a, b = parse_time(replay[0], "--replay START"), parse_time(replay[1], "--replay END")
        assert a is not None
        assert b is not None
        if b <= a:
            raise ValueError(f"--replay: END {replay[1]} is not after START {replay[0]}")
        span = (a, b)
    settings = PaperSettings(
        policy=policy, broker=broker, state=state, store=store, symbols=symbol_list(symbols),
        timeframe=timeframe, replay=span, bar_delay_s=bar_delay, fee=fee, max_bars=max_bars,
        symbol_map=list(symbol_map or []), live=live, broker_url=broker_url,
        data_exchange=data_exchange, data_url=data_url, history_bars=history_bars,
        grace_s=grace, allow_version_mismatch=allow_version_mismatch,
        cash_buffer=None if cash_buffer is None else parse_rate(cash_buffer, name="--cash-buffer"),
    )  # fmt: skip
    import signal

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)  # a service manager's stop: a clean end
    try:
        summary = run_paper(settings)
    except KeyboardInterrupt:
        err_console.print(f"stopped by a signal; resume with the same --state {state}",
                          markup=False, highlight=False)  # fmt: skip
        raise typer.Exit(130) from None
    except ReconcileError as exc:
        err_console.print(f"error: {exc}; the runner did not trade (see `paper status`)",
                          markup=False, highlight=False)  # fmt: skip
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    doc = {"state": str(state), **summary.to_dict()}
    if as_json:
        emit_json(doc)
        return
    p = doc["period"]
    console.print(
        f"session {doc['run_id']}: {doc['bars_processed']} bars ({p['start']} .. {p['end']}), "
        f"{doc['decisions']} decisions, {doc['orders_submitted']} orders submitted; final equity "
        f"{_money(doc['final_equity'])}; {doc['ended']}"
    )
    for r in doc["repairs"]:
        console.print(f"repair: {r}")


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


@app.command("status")
@fail_cleanly
def status(
    state: Path = typer.Option(..., "--state", help=STATE_HELP),
    grace: float = typer.Option(30.0, "--grace", help="seconds a bar may take to be processed"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Health, last decision, equity and P&L against the benchmarks, positions, open and
    skipped orders; exit 1 when the session is unhealthy (red)."""
    from cappuccino.monitoring.paper import session_status

    doc = session_status(state, grace_s=grace)
    red = doc["health"]["status"] == "red"
    if as_json:
        emit_json(doc)
    else:
        _print_status(doc)
    if red:
        raise typer.Exit(1)


def _print_status(doc: dict[str, Any]) -> None:
    h = doc["health"]
    line = f"{doc['state']}: {h['status'].upper()}"
    if "run_id" not in doc:  # nothing readable
        console.print(line)
        for r in h["reasons"]:
            console.print(f"  unhealthy: {r}")
        return
    if doc["ended"]:
        line += f" ({doc['ended']['reason']} at {doc['ended']['at']})"
    console.print(line)
    for r in h["reasons"]:
        console.print(f"  unhealthy: {r}")
    console.print(f"  {doc['mode']} session {doc['run_id']} on {doc['broker']}: {doc['policy']}, "
                  f"{', '.join(doc['symbols'])} {doc['timeframe']}")  # fmt: skip
    hb = h["heartbeat_age_s"]
    console.print(f"  heartbeat age: {'n/a' if hb is None else f'{hb:.0f} s'}; last bar: "
                  f"{h['last_bar'] or 'none'}; bars recorded: {doc['bars_recorded']}")  # fmt: skip
    d = doc["last_decision"]
    if d:
        tgt = ", ".join(f"{s} {u:.6g}" for s, u in d["target_units"].items())
        console.print(f"  last decision: bar {d['bar']} at {d['decided_at']}: target units {tgt}")
    pnl = doc["pnl"]
    if pnl:
        rows = [{"series": "session", "equity": _money(pnl["equity"]),
                 "pnl": _money(pnl["pnl"])}]  # fmt: skip
        for name, b in pnl["benchmarks"].items():
            if b:
                rows.append({"series": name, "equity": _money(b["equity"]),
                             "pnl": _money(b["pnl"])})  # fmt: skip
        table(rows, f"Since {pnl['since'][:16]}, quote currency", ["series", "equity", "pnl"])
        console.print(f"  return {pnl['return']:.2%}, max drawdown {pnl['max_drawdown']:.2%} "
                      "(benchmarks from the first bar's close, without fees)")  # fmt: skip
    pos = doc["positions"]
    held = ", ".join(f"{s} {q:.8g}" for s, q in pos["held"].items() if q) or "none"
    console.print(f"  positions: {held} ({'verified' if pos['verified'] else 'NOT verified'} "
                  f"against the broker at {pos['verified_at'] or 'never'})")  # fmt: skip
    console.print(f"  orders: {doc['orders']['total']} {doc['orders']['by_status']}; fills "
                  f"{doc['fills']}; fees {doc['fees']:,.2f}")  # fmt: skip
    for o in doc["open_orders"]:
        console.print(f"  open: {o['side']} {o['qty']:.8g} {o['symbol']} ({o['status']}, "
                      f"{o['age_s']:.0f} s old)")  # fmt: skip
    for o in doc["rejected"]:
        console.print(f"  {o['status'].lower()}: {o['side']} {o['qty']:.8g} {o['symbol']} at "
                      f"bar {o['bar']}: {o['reason']}")  # fmt: skip
    for k in doc["skipped"][-10:]:
        console.print(f"  skipped: {k['side']} {k['qty']:.8g} {k['symbol']} at bar {k['bar']}: "
                      f"{k['reason']}")  # fmt: skip


@app.command("orders")
@fail_cleanly
def orders(
    state: Path = typer.Option(..., "--state", help=STATE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Every order: client order id, bar, symbol, side, quantity, status and fills."""
    from cappuccino.workflows.paper import session_orders

    rows = session_orders(state)
    if as_json:
        emit_json({"state": str(state), "orders": rows})
        return
    table(
        [{**r, "fills": len(r["fills"])} for r in rows],
        f"{len(rows)} orders",
        ["client_order_id", "bar", "symbol", "side", "qty", "status", "filled_qty", "avg_price",
         "fills", "reason"],
    )  # fmt: skip
