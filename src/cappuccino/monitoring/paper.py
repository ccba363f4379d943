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
    if now.tzinfo is None:
        raise ValueError(f"now: got naive {now.isoformat()}, expected a UTC timestamp")
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
    summ = q("SELECT bars, fills, fees, skipped, max_drawdown FROM summary WHERE id = 1").fetchone()
    cols = "bar, cash, equity, prices, peak, bh, ew"
    first = q(f"SELECT {cols} FROM equity ORDER BY bar LIMIT 1").fetchone()
    last = q(f"SELECT {cols} FROM equity ORDER BY bar DESC LIMIT 1").fetchone()
    doc["bars_recorded"] = int(summ["bars"])
    doc["last_decision"] = _last_decision(con, run)
    doc["pnl"] = _pnl(first, last, summ, run.starting_equity)
    if series:
        doc["series"] = _series(con, run.starting_equity)
    doc["fees"], doc["fills"] = float(summ["fees"]), int(summ["fills"])
    by_status = {r[0]: int(r[1]) for r in q("SELECT status, n FROM order_counts WHERE n > 0 "
                                            "ORDER BY status")}  # fmt: skip
    doc["orders"] = {"total": sum(by_status.values()), "by_status": by_status}
    cols = ("i.client_order_id, i.bar, i.symbol, i.side, i.qty, i.created_at, o.status, "
            "o.filled_qty, o.reason")  # fmt: skip
    # orders first (their partial indexes hold the few open or refused ones), then intents
    join = (f"SELECT {cols} FROM orders o CROSS JOIN intents i "
            "ON i.client_order_id = o.client_order_id")  # fmt: skip
    doc["open_orders"] = [_order(r, now) for r in q(f"{join} WHERE o.final = 0 ORDER BY i.bar, "
                                                    "i.leg, i.symbol")]  # fmt: skip
    doc["rejected"] = [_order(r, now) for r in q(
        f"{join} WHERE o.status IN ('REJECTED', 'EXPIRED') ORDER BY o.updated_at DESC, "
        f"i.leg DESC, i.symbol DESC LIMIT {MAX_LISTED}")][::-1]  # fmt: skip
    doc["rejected_count"] = sum(by_status.get(s, 0) for s in ("REJECTED", "EXPIRED"))
    skipped: list[dict[str, Any]] = []
    for r in q("SELECT bar, skipped FROM decisions WHERE skipped != '[]' ORDER BY bar DESC"):
        skipped[:0] = [{"bar": _iso(r["bar"]), **k} for k in json.loads(r["skipped"])]
        if len(skipped) >= MAX_LISTED:
            break
    doc["skipped"] = skipped[-MAX_LISTED:]
    doc["skipped_count"] = int(summ["skipped"])
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


def _pnl(
    first: sqlite3.Row | None, last: sqlite3.Row | None, summ: sqlite3.Row,
    start_eq: float | None,
) -> dict[str, Any] | None:  # fmt: skip
    """Equity and P&L, drawdowns, and the benchmarks rebased to the starting equity (the
    database's running indexes, migration 0003)."""
    if first is None or last is None or start_eq is None:
        return None

    def bench(index: float | None) -> dict[str, float] | None:
        return None if index is None else {"equity": start_eq * index,
                                           "pnl": start_eq * index - start_eq}  # fmt: skip

    return {
        "equity": float(last["equity"]),
        "cash": float(last["cash"]),
        "pnl": float(last["equity"] - start_eq),
        "return": float(last["equity"] / start_eq - 1.0),
        "drawdown": float(last["equity"] / last["peak"] - 1.0),
        "max_drawdown": float(summ["max_drawdown"]),
        "since": _iso(first["bar"]),
        "at": _iso(last["bar"]),
        "benchmarks": {
            "cash": {"equity": start_eq, "pnl": 0.0},
            "buy_and_hold": bench(last["bh"]),
            "equal_weight": bench(last["ew"]),
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


def _series(con: sqlite3.Connection, start_eq: float | None) -> dict[str, Any]:
    """The equity curve, the benchmarks' curves and the drawdown at :data:`PLOT_POINTS`
    rows evenly spaced by row id (rows are appended in bar order)."""
    lo, hi = con.execute("SELECT MIN(rowid), MAX(rowid) FROM equity").fetchone()
    out: dict[str, Any] = {"bar": [], "equity": []}
    if lo is None:
        return out
    ids = ", ".join(str(int(lo + k)) for k in thin(int(hi - lo + 1)))
    rows = con.execute(f"SELECT bar, equity, peak, bh, ew FROM equity WHERE rowid IN ({ids}) "
                       "ORDER BY bar").fetchall()  # fmt: skip
    out["bar"] = [_iso(r["bar"]) for r in rows]
    out["equity"] = [float(r["equity"]) for r in rows]
    out["drawdown"] = [float(r["equity"] / r["peak"] - 1.0) for r in rows]
    if start_eq is not None:
        for key in ("bh", "ew"):
            if all(r[key] is not None for r in rows):
                name = "buy_and_hold" if key == "bh" else "equal_weight"
                out[name] = [start_eq * float(r[key]) for r in rows]
    return out
