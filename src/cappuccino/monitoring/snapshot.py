"""One status snapshot of studies, paper sessions, MLflow runs and the machine; every view
(the dashboard, ``monitor``, ``report status``) renders this, and every exit code comes from
its :attr:`Snapshot.status`.

Overall status: **red** when a paper session is red (the rules of
:mod:`cappuccino.live.health`) or a source could not be read; **amber** when a study has a
running trial with a stale heartbeat (:mod:`cappuccino.monitoring.studies`); **ok**
otherwise. Every source is opened read-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from cappuccino.monitoring.machine import machine_status
from cappuccino.monitoring.paper import session_status
from cappuccino.monitoring.studies import StudyReader

Status = Literal["ok", "amber", "red"]
_RANK = {"ok": 0, "stopped": 0, "amber": 1, "red": 2}


@dataclass
class Snapshot:
    """What every view shows. ``studies``, ``paper`` and ``runs`` are the documents of
    :mod:`~cappuccino.monitoring.studies`, :mod:`~cappuccino.monitoring.paper` and
    :mod:`~cappuccino.monitoring.runs`; ``machine`` of :mod:`~cappuccino.monitoring.machine`."""

    at: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    studies: list[dict[str, Any]] = field(default_factory=list)
    paper: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None
    explanations: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)
    build_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Monitor:
    """The sources of a snapshot, opened once (bad input and unreachable services are found
    here, before any view starts) and read again by every :meth:`snapshot`."""

    def __init__(
        self,
        storages: list[str] | None = None,
        states: list[Path] | None = None,
        mlflow: str | None = None,
        *,
        experiments: list[str] | None = None,
        output_dir: Path | None = None,
        grace_s: float = 30.0,
        machine: bool = True,
        rl_stats: bool = True,
        clock: Callable[[], datetime] | None = None,
        explanations: list[Path] | None = None,
    ) -> None:
        self.studies = [StudyReader(u) for u in storages or []]
        self.states = [Path(p) for p in states or []]
        for p in self.states:
            if p.is_dir():
                raise ValueError(f"--state: {p}: is a directory, expected a session's state file")
        self.runs = None
        if mlflow:
            from cappuccino.monitoring.runs import RunsReader

            self.runs = RunsReader(mlflow, experiments)
        self.explanations = [Path(p) for p in explanations or []]
        for p in self.explanations:
            if not p.is_file():
                raise ValueError(f"--explain: {p}: no such file (an explain.json of `rl explain`)")
        self.output_dir = output_dir
        self.grace_s = grace_s
        self.machine = machine
        self.rl_stats = rl_stats
        self.clock = clock or (lambda: datetime.now(UTC))
        for r in self.studies:  # fail now on a storage that is not one (exit 2) or down (3)
            r.check()

    def close(self) -> None:
        for r in self.studies:
            r.close()

    def snapshot(self, now: datetime | None = None) -> Snapshot:
        t0 = time.perf_counter()
        now = now or self.clock()
        snap = Snapshot(at=now.isoformat(), status="ok")
        snap.sources = {"storages": [r.shown for r in self.studies],
                        "states": [str(p) for p in self.states],
                        "mlflow": self.runs.uri if self.runs else None}  # fmt: skip
        for r in self.studies:
            try:
                snap.studies.extend(r.snapshot(now, rl_stats=self.rl_stats))
            except (SQLAlchemyError, ValueError, OSError) as exc:
                snap.reasons.append(f"storage {r.shown}: unreadable ({_first(exc)})")
        for p in self.states:
            snap.paper.append(session_status(p, now, self.grace_s, series=True))
        if self.runs is not None:
            try:
                snap.runs = self.runs.snapshot()
            except Exception as exc:  # noqa: BLE001 (mlflow raises its own and requests' errors: shown red)
                snap.reasons.append(f"mlflow {self.runs.uri}: unreadable ({_first(exc)})")
        for p in self.explanations:
            try:
                snap.explanations.append(json.loads(p.read_text()) | {"file": str(p)})
            except (OSError, ValueError) as exc:
                snap.reasons.append(f"explanation {p}: unreadable ({_first(exc)})")
        if self.machine:
            snap.machine = machine_status(self.output_dir)
        snap.status, extra = overall(snap)
        snap.reasons.extend(extra)
        snap.build_ms = (time.perf_counter() - t0) * 1000
        return snap


def overall(snap: Snapshot) -> tuple[Status, list[str]]:
    """The worst status of the parts, and the reasons of every part that is not ok."""
    worst = "red" if snap.reasons else "ok"
    reasons = []
    for p in snap.paper:
        h = p["health"]
        if h["status"] == "red":
            worst = "red"
            reasons += [f"paper {p['state']}: {r}" for r in h["reasons"]]
    for s in snap.studies:
        if s["health"]["status"] == "amber":
            worst = max(worst, "amber", key=_RANK.__getitem__)
            reasons += [f"study {s['study_name']}: {r}" for r in s["health"]["reasons"]]
    return worst, reasons  # type: ignore[return-value]


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def status(
    storages: list[str] | None = None,
    states: list[Path] | None = None,
    mlflow: str | None = None,
    *,
    now: datetime | None = None,
    **kw: Any,
) -> Snapshot:
    """One snapshot of the given sources (see :class:`Monitor` for the options)."""
    m = Monitor(storages, states, mlflow, **kw)
    try:
        return m.snapshot(now)
    finally:
        m.close()
