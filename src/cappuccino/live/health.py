"""Is a paper session alive? Read its state file (read-only, never migrated or locked) and
judge the runner's heartbeat and last processed bar.

A session that ended cleanly (a finished replay, ``--max-bars``, a stop) is **stopped**:
not red, whatever the age of its heartbeat. A session is **unhealthy** (red) when its last
reconciliation found a difference, or when its state file is missing or unreadable (not SQLite, not a
session's schema), holds no session, has no heartbeat yet, or when the heartbeat or the
last processed bar is older than its limit (a session that has processed no bar yet is
judged from its start):

- heartbeat: :data:`MAX_HEARTBEAT_AGE_S` (four beats); the runner beats every
  :data:`HEARTBEAT_EVERY_S` also while it waits for a bar, so a silent runner is dead or hung;
- last bar: a bar closes every ``timeframe``; the runner has ``grace_s`` after a close to
  process it, so the last processed bar may lag ``now`` by at most two bars plus the grace
  (the bar that closed last is processed, the one after it is still open).

Times are aware UTC datetimes; ages are seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cappuccino.live.state import RunRow
from cappuccino.market.timeframe import Timeframe

HEARTBEAT_EVERY_S = 30.0
MAX_HEARTBEAT_AGE_S = 4 * HEARTBEAT_EVERY_S


@dataclass
class SessionHealth:
    """The verdict on one state file: ``healthy`` and, when not, every reason."""

    path: str
    healthy: bool
    reasons: list[str] = field(default_factory=list)
    heartbeat_age_s: float | None = None
    last_bar: datetime | None = None
    bar_lag_s: float | None = None
    mode: str | None = None
    stopped: bool = False
    status: str = "red"  # "ok", "stopped" (a clean end: not red) or "red"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_bar"] = self.last_bar.isoformat() if self.last_bar else None
        return d


def _read_run(path: Path) -> RunRow | None:
    """The session row, read through a read-only connection (a status check never writes)."""
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with Session(engine) as s:
            return s.scalars(select(RunRow)).first()
    finally:
        engine.dispose()


def check_health(
    path: Path,
    now: datetime,
    timeframe: Timeframe,
    *,
    grace_s: float = 30.0,
    max_heartbeat_age_s: float = MAX_HEARTBEAT_AGE_S,
) -> SessionHealth:
    """Judge the session in ``path`` at ``now``; see the module docstring for the rules."""
    if now.tzinfo is None:
        raise ValueError(f"now: got naive {now.isoformat()}, expected a UTC timestamp")
    path = Path(path)
    out = SessionHealth(path=str(path), healthy=False)
    if not path.is_file():
        out.reasons.append("state file missing")
        return out
    try:
        run = _read_run(path)
    except (SQLAlchemyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        out.reasons.append(f"state file unreadable ({first[:200]})")
        return out
    if run is None:
        out.reasons.append("no session started in this state file")
        return out
    out.mode = run.mode
    recon = run.reconcile or {}
    if recon and not recon.get("ok", True):
        diffs = "; ".join(recon.get("differences", []))[:300]
        out.reasons.append(f"reconciliation at bar {recon.get('bar')} found differences: {diffs}")
    if run.ended_at is not None and not out.reasons:
        out.stopped, out.healthy, out.status = True, True, "stopped"
        out.last_bar = run.last_bar
        return out
    bar_s = timeframe.ms / 1000
    limit = max_heartbeat_age_s
    if run.heartbeat_at is None:
        out.reasons.append("no heartbeat yet")
    else:
        out.heartbeat_age_s = (now - run.heartbeat_at).total_seconds()
        if out.heartbeat_age_s > limit:
            out.reasons.append(
                f"stale heartbeat: {out.heartbeat_age_s:.0f} s old, limit {limit:.0f} s"
            )
    out.last_bar = run.last_bar
    max_lag = 2 * bar_s + grace_s
    if run.last_bar is None:
        waited = (now - run.created_at).total_seconds()
        if waited > max_lag:
            out.reasons.append(
                f"no bar processed in the {waited:.0f} s since the session started, limit "
                f"{max_lag:.0f} s"
            )
    else:
        out.bar_lag_s = (now - run.last_bar).total_seconds()
        if out.bar_lag_s > max_lag:
            out.reasons.append(
                f"last processed bar {run.last_bar.isoformat()} is {out.bar_lag_s:.0f} s "
                f"behind, limit {max_lag:.0f} s (two {timeframe} bars plus {grace_s:.0f} s)"
            )
    out.healthy = not out.reasons
    out.status = "ok" if out.healthy else "red"
    return out
