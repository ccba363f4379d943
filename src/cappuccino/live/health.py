"""Is a paper session alive? The one set of health rules every view uses (``paper status``,
``monitor``, the dashboard, the status report, their exit codes).

A session that ended cleanly (a finished replay, ``--max-bars``, a stop) is **stopped**:
not red, whatever the age of its heartbeat. A session is **unhealthy** (red) when:

- its last reconciliation found a difference;
- its broker is unreachable: the runner's last word on the broker is a
  ``broker_unreachable`` event (a later ``broker_reachable`` clears it);
- its heartbeat is older than three bars or :data:`MAX_HEARTBEAT_AGE_S` (four beats),
  whichever is shorter; the runner beats every :data:`HEARTBEAT_EVERY_S` also while it
  waits for a bar, so a silent runner is dead or hung;
- its last processed bar closed more than one bar plus ``grace_s`` ago: a bar closes one
  ``timeframe`` after its open time, the runner has ``grace_s`` to process it, so the open
  time of the last processed bar may lag ``now`` by at most two bars plus the grace (a
  session that has processed no bar yet is judged from its start);
- its state file is missing or unreadable (not SQLite, not a session's schema), holds no
  session, or has no heartbeat yet.

:func:`judge` applies the rules to facts already read;
:func:`cappuccino.monitoring.paper.session_status` reads them from a state file (read-only,
never migrated or locked) and judges them here. Times are aware UTC datetimes; ages are
seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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


def heartbeat_limit_s(
    timeframe: Timeframe, max_heartbeat_age_s: float = MAX_HEARTBEAT_AGE_S
) -> float:
    """Three bars or ``max_heartbeat_age_s``, whichever is shorter."""
    return min(3 * timeframe.ms / 1000, max_heartbeat_age_s)


def unreadable(path: Path, exc: BaseException) -> SessionHealth:
    """The verdict on a state file that could not be read."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SessionHealth(path=str(path), healthy=False,
                         reasons=[f"state file unreadable ({first[:200]})"])  # fmt: skip


def judge(
    path: Path,
    run: Any,
    broker_down: tuple[datetime, str] | None,
    now: datetime,
    timeframe: Timeframe,
    *,
    grace_s: float = 30.0,
    max_heartbeat_age_s: float = MAX_HEARTBEAT_AGE_S,
) -> SessionHealth:
    """The rules of the module docstring applied to a session row (``mode``, ``reconcile``,
    ``ended_at``, ``heartbeat_at``, ``last_bar``, ``created_at``) and the broker's outage
    still going on (at, detail), if any."""
    if now.tzinfo is None:
        raise ValueError(f"now: got naive {now.isoformat()}, expected a UTC timestamp")
    out = SessionHealth(path=str(path), healthy=False)
    out.mode = run.mode
    recon = run.reconcile or {}
    if recon and not recon.get("ok", True):
        diffs = "; ".join(recon.get("differences", []))[:300]
        out.reasons.append(f"reconciliation at bar {recon.get('bar')} found differences: {diffs}")
    if broker_down is not None:
        out.reasons.append(f"broker unreachable since {broker_down[0].isoformat()}: "
                           f"{broker_down[1][:300]}")  # fmt: skip
    if run.ended_at is not None and not out.reasons:
        out.stopped, out.healthy, out.status = True, True, "stopped"
        out.last_bar = run.last_bar
        return out
    bar_s = timeframe.ms / 1000
    limit = heartbeat_limit_s(timeframe, max_heartbeat_age_s)
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
                f"behind, limit {max_lag:.0f} s (its close plus one {timeframe} bar plus "
                f"{grace_s:.0f} s)"
            )
    out.healthy = not out.reasons
    out.status = "ok" if out.healthy else "red"
    return out
