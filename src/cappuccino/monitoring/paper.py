"""A paper session's status from its state file, read-only (``paper status``, ``monitor``, the
dashboard and the status report all read it here).

The file is opened through a read-only SQLite URI: never migrated, never locked; the runner
writes in WAL mode, so a reader sees the last committed bar and never blocks it. Large
tables are summarised in SQL (counts, sums, the newest rows), and the equity series is read
as plain rows into numpy, so a session of 100,000 bars reads in a few tens of milliseconds.

Conventions: money in the quote currency; returns are simple; drawdowns are fractions of
the running peak (<= 0); the benchmarks start at the first recorded bar's close, rebased to
the session's starting equity, and pay no fees; ages are seconds.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cappuccino.live.health import SessionHealth, judge, unreadable
from cappuccino.live.state import BROKER_DOWN, BROKER_UP, StateError, head_revision
from cappuccino.market.timeframe import Timeframe

MAX_LISTED = 50
"""Rejected and skipped orders and events listed (the newest); the counts are complete."""
PLOT_POINTS = 1500
"""Points of the equity series kept for plots (evenly spaced, the last bar always kept)."""


def _time(text: str | None) -> datetime | None:
    """A stored time (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``) as an aware datetime."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _iso(text: str | None) -> str | None:
    t = _time(text)
    return None if t is None else t.isoformat()


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to a session's state file; :class:`StateError` for a file that
    is not one, or not at this version's schema."""
    path = Path(path)
    if path.is_dir():
        raise StateError(f"{path}: is a directory, expected a session's state file")
    if not path.is_file():
        raise StateError(f"{path} does not exist")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        rev = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        con.close()
        raise StateError(f"{path}: not a session state file ({exc})") from exc
    if rev is None or rev[0] != head_revision():
        con.close()
        raise StateError(
            f"{path}: schema revision {rev[0] if rev else None!r}, expected "
            f"{head_revision()!r} (resume the session with `paper run` once to upgrade it)"
        )
    return con


class _Run:
    """The run row's fields that health and status need."""

    def __init__(self, row: sqlite3.Row) -> None:
        self.id: str = row["id"]
        self.mode: str = row["mode"]
        self.broker: str = row["broker"]
        self.policy: str = row["policy"]
        self.symbols: list[str] = json.loads(row["symbols"])
        self.timeframe: str = row["timeframe"]
        self.created_at = _time(row["created_at"])
        self.heartbeat_at = _time(row["heartbeat_at"])
        self.last_bar = _time(row["last_bar"])
        self.ended_at = _time(row["ended_at"])
        self.end_reason: str | None = row["end_reason"]
        self.starting_cash: float | None = row["starting_cash"]
        self.starting_equity: float | None = row["starting_equity"]
        self.reconcile: dict[str, Any] | None = json.loads(row["reconcile"] or "null")


def _red(path: Path, health: SessionHealth) -> dict[str, Any]:
    return {"state": str(path), "health": health.to_dict()}


def session_status(
    path: Path, now: datetime | None = None, grace_s: float = 30.0, *, series: bool = False
) -> dict[str, Any]:
    """Health, the last decision (time, target units and weights, policy), equity and P&L
    against the benchmarks, drawdowns, positions (and whether they were verified against
    the broker), open orders with their age, fees, rejected and skipped orders with their
    reasons, reconciliation and the newest events. ``series``: also the equity curve and
    the benchmarks' curves, thinned to :data:`PLOT_POINTS` points, for plots.

    A missing or unreadable file is not an error here: it is a red status naming why."""
    now = now or datetime.now(UTC)
    path = Path(path)
    try:
        con = connect(path)
    except (StateError, sqlite3.Error) as exc:
        if not path.is_file():
            return _red(path, _missing(path))
        return _red(path, unreadable(path, exc))
    try:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM run").fetchone()
        if row is None:
            h = _missing(path, "no session started in this state file")
            return _red(path, h)
        return _status(con, path, _Run(row), now, grace_s, series)
    finally:
        con.close()


def _missing(path: Path, reason: str = "state file missing") -> SessionHealth:
    return SessionHealth(path=str(path), healthy=False, reasons=[reason])


def _status(
    con: sqlite3.Connection, path: Path, run: _Run, now: datetime, grace_s: float, series: bool
) -> dict[str, Any]:
    q = con.execute
    last_broker = q("SELECT at, kind, detail FROM events WHERE kind IN (?, ?) ORDER BY id DESC "
                    "LIMIT 1", (BROKER_DOWN, BROKER_UP)).fetchone()  # fmt: skip
    down = None
    if last_broker is not None and last_broker["kind"] == BROKER_DOWN:
        at = _time(last_broker["at"])
        assert at is not None  # the column is NOT NULL
        down = (at, str(last_broker["detail"]))
    tf = Timeframe.parse(run.timeframe)
    health = judge(path, run, down, now, tf, grace_s=grace_s).to_dict()
    doc: dict[str, Any] = {
        "state": str(path),
        "run_id": run.id,
        "mode": run.mode,
        "broker": run.broker,
        "policy": run.policy,
        "symbols": run.symbols,
        "timeframe": run.timeframe,
        "health": health,
        "started_at": run.created_at.isoformat() if run.created_at else None,
        "ended": {"at": run.ended_at.isoformat(), "reason": run.end_reason}
        if run.ended_at
        else None,
        "starting_cash": run.starting_cash,
        "starting_equity": run.starting_equity,
    }
    eq = _equity(con, run.symbols)
    doc["bars_recorded"] = int(eq["equity"].size)
    doc["last_decision"] = _last_decision(con, run)
    doc["pnl"] = _pnl(eq, run.starting_equity, run.symbols)
    if series:
        doc["series"] = _series(eq, run.starting_equity)
    n_fills, fees = q("SELECT COUNT(*), COALESCE(SUM(fee), 0.0) FROM fills").fetchone()
    doc["fees"], doc["fills"] = float(fees), int(n_fills)
    by_status = {r[0]: int(r[1]) for r in q("SELECT status, COUNT(*) FROM orders GROUP BY status "
                                            "ORDER BY status")}  # fmt: skip
    doc["orders"] = {"total": sum(by_status.values()), "by_status": by_status}
    cols = ("i.client_order_id, i.bar, i.symbol, i.side, i.qty, i.created_at, o.status, "
            "o.filled_qty, o.reason")  # fmt: skip
    join = f"SELECT {cols} FROM intents i JOIN orders o ON o.client_order_id = i.client_order_id"
    doc["open_orders"] = [_order(r, now) for r in q(f"{join} WHERE NOT o.final ORDER BY i.bar, "
                                                    "i.leg, i.symbol")]  # fmt: skip
    doc["rejected"] = [_order(r, now) for r in q(
        f"{join} WHERE o.status IN ('REJECTED', 'EXPIRED') ORDER BY i.bar DESC, i.leg, i.symbol "
        f"LIMIT {MAX_LISTED}")][::-1]  # fmt: skip
    doc["rejected_count"] = sum(by_status.get(s, 0) for s in ("REJECTED", "EXPIRED"))
    skipped: list[dict[str, Any]] = []
    n_skipped = 0
    for r in q("SELECT bar, skipped FROM decisions WHERE skipped != '[]' ORDER BY bar DESC"):
        items = json.loads(r["skipped"])
        n_skipped += len(items)
        if len(skipped) < MAX_LISTED:
            skipped[:0] = [{"bar": _iso(r["bar"]), **k} for k in items]
    doc["skipped"] = skipped[-MAX_LISTED:]
    doc["skipped_count"] = n_skipped
    recon = run.reconcile or {}
    doc["positions"] = {
        "held": {r[0]: float(r[1]) for r in q("SELECT symbol, qty FROM positions ORDER BY symbol")},
        "verified": bool(recon.get("ok")),
        "verified_at": recon.get("at"),
        "note": "as reconciled against the broker at the last processed bar",
    }
    doc["reconcile"] = recon or None
    doc["events"] = [{"at": _iso(r["at"]), "kind": r["kind"], "detail": r["detail"]}
                     for r in q(f"SELECT at, kind, detail FROM events ORDER BY id DESC "
                                f"LIMIT {MAX_LISTED}")][::-1]  # fmt: skip
    return doc


def _order(r: sqlite3.Row, now: datetime) -> dict[str, Any]:
    created = _time(r["created_at"])
    return {"client_order_id": r["client_order_id"], "bar": _iso(r["bar"]), "symbol": r["symbol"],
            "side": r["side"], "qty": r["qty"], "status": r["status"],
            "filled_qty": r["filled_qty"], "reason": r["reason"],
            "age_s": (now - created).total_seconds() if created else None}  # fmt: skip


def _equity(con: sqlite3.Connection, symbols: list[str]) -> dict[str, Any]:
    """The equity table as arrays: bar (text), cash, equity, and close prices (bars x
    symbols; NaN where a row has none), read with SQLite's JSON functions."""
    picks = ", ".join(f"json_extract(prices, '$.\"{s}\"')" for s in symbols)
    rows = con.execute(f"SELECT bar, cash, equity, {picks} FROM equity ORDER BY bar").fetchall()
    if not rows:
        e = np.empty(0)
        return {"bar": [], "cash": e, "equity": e, "prices": np.empty((0, len(symbols)))}
    cols = list(zip(*rows, strict=True))
    prices = np.array(cols[3:], dtype=np.float64).T if symbols else np.empty((len(rows), 0))
    return {"bar": list(cols[0]), "cash": np.array(cols[1], dtype=np.float64),
            "equity": np.array(cols[2], dtype=np.float64), "prices": prices}  # fmt: skip


def _last_decision(con: sqlite3.Connection, run: _Run) -> dict[str, Any] | None:
    r = con.execute("SELECT bar, decided_at, target_units, equity, note FROM decisions "
                    "ORDER BY bar DESC LIMIT 1").fetchone()  # fmt: skip
    if r is None:
        return None
    units = json.loads(r["target_units"])
    weights: dict[str, float] | None = None
    px_row = con.execute("SELECT prices FROM equity WHERE bar = ?", (r["bar"],)).fetchone()
    px = json.loads(px_row[0] or "null") if px_row is not None else None
    if px and r["equity"]:
        weights = {s: float(u) * float(px[s]) / float(r["equity"])
                   for s, u in units.items() if s in px}  # fmt: skip
    return {"bar": _iso(r["bar"]), "decided_at": _iso(r["decided_at"]), "target_units": units,
            "target_weights": weights, "equity": r["equity"], "policy": run.policy,
            "note": r["note"],
            "convention": "target weights: target units x the bar's close / equity"}  # fmt: skip


def _benchmarks(eq: dict[str, Any], start_eq: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Buy-and-hold (equal weights at the first close, then held) and equal weight
    (rebalanced every bar) equity per bar, rebased to ``start_eq``; None without prices."""
    p = eq["prices"]
    if p.size == 0 or not np.isfinite(p).all():
        return None
    bh = start_eq * (p / p[0]).mean(axis=1)
    rel = np.ones(p.shape[0])
    rel[1:] = (p[1:] / p[:-1]).mean(axis=1)
    return bh, start_eq * np.cumprod(rel)


def _pnl(eq: dict[str, Any], start_eq: float | None, symbols: list[str]) -> dict[str, Any] | None:
    e = eq["equity"]
    if e.size == 0 or start_eq is None:
        return None
    peak = np.maximum.accumulate(e)
    dd = e / peak - 1.0
    bench = _benchmarks(eq, start_eq)
    bh = ew = None
    if bench is not None:
        bh, ew = float(bench[0][-1]), float(bench[1][-1])
    return {
        "equity": float(e[-1]),
        "cash": float(eq["cash"][-1]),
        "pnl": float(e[-1] - start_eq),
        "return": float(e[-1] / start_eq - 1.0),
        "drawdown": float(dd[-1]),
        "max_drawdown": float(dd.min()),
        "since": _iso(eq["bar"][0]),
        "at": _iso(eq["bar"][-1]),
        "benchmarks": {
            "cash": {"equity": start_eq, "pnl": 0.0},
            "buy_and_hold": None if bh is None else {"equity": bh, "pnl": bh - start_eq},
            "equal_weight": None if ew is None else {"equity": ew, "pnl": ew - start_eq},
        },
        "convention": "quote currency; return is simple; drawdown (now) and max_drawdown are "
        "fractions of the running peak; benchmarks from the first recorded bar's close, "
        "rebased to the starting equity, without fees",
    }


def thin(n: int, points: int = PLOT_POINTS) -> np.ndarray:
    """Indices of ``points`` evenly spaced rows of ``n`` (all of them when fewer), the last
    row always among them."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))


def _series(eq: dict[str, Any], start_eq: float | None) -> dict[str, Any]:
    n = eq["equity"].size
    k = thin(n)
    out: dict[str, Any] = {"bar": [_iso(eq["bar"][i]) for i in k],
                           "equity": eq["equity"][k].tolist()}  # fmt: skip
    if n and start_eq is not None:
        bench = _benchmarks(eq, start_eq)
        if bench is not None:
            out["buy_and_hold"], out["equal_weight"] = bench[0][k].tolist(), bench[1][k].tolist()
        peak = np.maximum.accumulate(eq["equity"])
        out["drawdown"] = (eq["equity"] / peak - 1.0)[k].tolist()
    return out
