"""The status of Optuna studies, read-only and straight from the storage's tables.

Optuna's own API loads every trial with its parameters, values, intermediate values and
attributes (seconds for 10,000 trials) and may create tables; a monitor needs neither. The
study tables (schema ``version_info.schema_version`` :data:`SCHEMA_VERSION`, Optuna 3.x to
5.x) are read here in a few aggregate queries on a read-only connection: a SQLite file
through a ``mode=ro`` URI (a reader never takes a write lock, so a worker never sees
"database is locked" because of it), PostgreSQL in a read-only transaction. Another schema
version is refused with a clear error rather than misread.

Per study: counts by state, the best trial, the top trials, trials finished per hour, the
pruned share, failures with their reasons, running trials with each worker's heartbeat age,
the value distribution of every categorical parameter's arms (FT vs MLP encoders, losses,
...), and for an RL study its PBO, deflated Sharpe and CPCV path Sharpes
(:func:`cappuccino.tuning.report.rl_statistics`, cached per number of complete trials).

A study is **amber** when a running trial's heartbeat is older than the study's
``grace_period`` (its worker is dead or hung; Optuna re-queues the trial when the next
worker starts). Times: ``datetime_start``/``datetime_complete`` are written by the workers
(naive local time, as Optuna writes them); heartbeats are the database's
``CURRENT_TIMESTAMP`` (UTC on SQLite, and on a PostgreSQL server in UTC). Values are in the
study's metric (named in ``metric``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from cappuccino.config.secrets import storage_url
from cappuccino.monitoring.paper import thin

log = logging.getLogger(__name__)

SCHEMA_VERSION = 12
"""Optuna's storage schema version (``version_info``) this reader understands."""
TOP = 5
MAX_FAILURES = 20
MAX_ARM_VALUES = 2000
DEFAULT_GRACE_S = 120.0
"""Heartbeat silence after which a running trial is stale, when the study stores no config
(Optuna's and Cappuccino's default ``grace_period``)."""


class StorageError(ValueError):
    """A storage that is not an Optuna storage this reader understands (bad input, exit 2)."""


def read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite through a ``mode=ro`` URI (the file must exist),
    PostgreSQL with read-only transactions; the password from the environment
    (:func:`cappuccino.config.secrets.storage_url`)."""
    full = storage_url(url)
    u = make_url(full)
    if u.get_backend_name() == "sqlite":
        db = u.database or ""
        if not db or db == ":memory:":
            raise StorageError(f"--storage: {url}: expected a SQLite file, got an in-memory one")
        from pathlib import Path

        if not Path(db).is_file():
            raise StorageError(f"--storage: {url}: no such file")
        return create_engine(f"sqlite:///file:{Path(db).resolve()}?mode=ro&uri=true",
                             connect_args={"timeout": 5.0})  # fmt: skip
    if u.get_backend_name() == "postgresql":
        return create_engine(full, connect_args={"options": "-c default_transaction_read_only=on"},
                             pool_pre_ping=True)  # fmt: skip
    return create_engine(full)


def _decode(dist_json: str) -> list[Any] | None:
    """The choices of a categorical distribution; None for any other distribution."""
    d = json.loads(dist_json)
    if d.get("name") != "CategoricalDistribution":
        return None
    return list(d["attributes"]["choices"])


def _param(value: float, dist_json: str) -> Any:
    """A stored parameter value as the trial saw it (Optuna stores every value as a float:
    a categorical's is the index of its choice)."""
    d = json.loads(dist_json)
    if d.get("name") == "CategoricalDistribution":
        return d["attributes"]["choices"][int(value)]
    if d.get("name") == "IntDistribution":
        return int(value)
    return value


@dataclass
class _Cache:
    n_complete: int
    rl: dict[str, Any]


_RL_CACHE: dict[tuple[str, str], _Cache] = {}


class StudyReader:
    """Every study in one storage; :meth:`snapshot` reads them all (one connection)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = make_url(storage_url(url)).render_as_string(hide_password=True)
        self.engine = read_only_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def snapshot(self, now: datetime, *, rl_stats: bool = True) -> list[dict[str, Any]]:
        """One document per study (see the module docstring)."""
        try:
            with self.engine.connect() as c:
                self._check_schema(c)
                studies = c.execute(text("SELECT study_id, study_name FROM studies "
                                         "ORDER BY study_id")).all()  # fmt: skip
                return [self._study(c, int(sid), str(name), now, rl_stats)
                        for sid, name in studies]  # fmt: skip
        except SQLAlchemyError as exc:
            from sqlalchemy.exc import OperationalError

            if isinstance(exc, OperationalError) and "no such table" in str(exc):
                raise StorageError(f"--storage: {self.shown}: not an Optuna storage "
                                   f"({str(exc.orig).splitlines()[0]})") from exc  # fmt: skip
            raise

    def _check_schema(self, c: Connection) -> None:
        try:
            row = c.execute(
                text("SELECT schema_version, library_version FROM version_info")
            ).first()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"--storage: {self.shown}: not an Optuna storage (no version_info table)"
            ) from exc
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise StorageError(
                f"--storage: {self.shown}: Optuna schema version {row[0] if row else None}, "
                f"expected {SCHEMA_VERSION} (Optuna 3.x to 5.x)"
            )

    # -- one study ---------------------------------------------------------------------------
    def _study(
        self, c: Connection, sid: int, name: str, now: datetime, rl_stats: bool
    ) -> dict[str, Any]:
        p = {"sid": sid}
        attrs = {k: json.loads(v) for k, v in c.execute(text(
            "SELECT key, value_json FROM study_user_attributes WHERE study_id = :sid"), p)}  # fmt: skip
        cfg = attrs.get("config") or {}
        direction = (c.execute(text("SELECT direction FROM study_directions WHERE study_id = :sid "
                                    "AND objective = 0"), p).scalar() or "MAXIMIZE")  # fmt: skip
        maximize = str(direction).upper().endswith("MAXIMIZE")
        rows = c.execute(text(
            "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete, v.value "
            "FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
            "WHERE t.study_id = :sid ORDER BY t.number"), p).all()  # fmt: skip
        trials: list[Any] = list(rows)
        states = [str(t[2]) for t in trials]
        counts: dict[str, int] = {}
        for s in states:
            counts[s] = counts.get(s, 0) + 1
        finished = sum(counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
        complete = [t for t in trials if t[2] == "COMPLETE" and t[5] is not None]
        sign = -1.0 if maximize else 1.0
        ranked = sorted(complete, key=lambda t: (sign * float(t[5]), t[1]))
        top = ranked[:TOP]
        top_ids = [int(t[0]) for t in top]
        params = self._params(c, top_ids)
        bundles = self._user_attr(c, top_ids, "bundle")
        kind = cfg.get("kind", "supervised")
        metric = cfg.get("metric", "objective") if kind == "supervised" else (
            "mean over CPCV folds of annualised OOS Sharpe minus "
            f"{(cfg.get('cv') or {}).get('benchmark', 'equal_weight:24')}'s")  # fmt: skip
        doc: dict[str, Any] = {
            "storage": self.shown,
            "study_name": name,
            "kind": kind,
            "metric": metric,
            "direction": "maximize" if maximize else "minimize",
            "counts": dict(sorted(counts.items())),
            "trials": len(trials),
            "finished": finished,
            "pruned_share": counts.get("PRUNED", 0) / finished if finished else None,
            "best": None,
            "top_trials": [
                {"trial": int(t[1]), "value": float(t[5]), "params": params.get(int(t[0]), {}),
                 "bundle": bundles.get(int(t[0])), "seconds": _seconds(t[3], t[4])}
                for t in top
            ],
        }  # fmt: skip
        if top:
            doc["best"] = doc["top_trials"][0]
        doc["rate"] = _rate(trials, now)
        doc["failures"] = self._failures(c, trials, attrs)
        grace = float((cfg.get("storage") or {}).get("grace_period", DEFAULT_GRACE_S))
        doc["running"] = self._running(c, trials, now, grace)
        doc["arms"] = self._arms(c, sid, trials, maximize)
        doc["history"] = _history(complete, maximize)
        stale = [r for r in doc["running"] if r["stale"]]
        doc["health"] = {
            "status": "amber" if stale else "ok",
            "reasons": [f"trial {r['trial']}: heartbeat {r['heartbeat_age_s']:.0f} s old, "
                        f"limit {grace:.0f} s (worker dead or hung)" for r in stale],
        }  # fmt: skip
        doc["rl"] = None
        if kind == "rl" and rl_stats:
            doc["rl"] = self._rl(c, name, cfg, complete, counts)
        doc["units"] = (f"values: {metric}; trials_per_hour: finished trials per hour; "
                        "pruned_share: PRUNED / (COMPLETE + PRUNED + FAIL); ages in seconds")  # fmt: skip
        return doc

    def _params(self, c: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        out: dict[int, dict[str, Any]] = {i: {} for i in ids}
        rows = c.execute(text(f"SELECT trial_id, param_name, param_value, distribution_json "
                              f"FROM trial_params WHERE trial_id IN ({_ids(ids)}) "
                              "ORDER BY param_id")).all()  # fmt: skip
        for tid, pname, value, dist in rows:
            out[int(tid)][pname] = _param(value, dist)
        return out

    def _user_attr(self, c: Connection, ids: list[int], key: str) -> dict[int, Any]:
        if not ids:
            return {}
        rows = c.execute(text(f"SELECT trial_id, value_json FROM trial_user_attributes WHERE "
                              f"key = :k AND trial_id IN ({_ids(ids)})"), {"k": key}).all()  # fmt: skip
        return {int(t): json.loads(v) for t, v in rows}

    def _failures(self, c: Connection, trials: list[Any], attrs: dict[str, Any]) -> dict[str, Any]:
        failed = [t for t in trials if t[2] == "FAIL"]
        shown = failed[-MAX_FAILURES:]
        ids = [int(t[0]) for t in shown]
        errors = self._user_attr(c, ids, "error")
        skipped = self._user_attr(c, ids, "skipped")
        lost = set(attrs.get("heartbeat_lost", []))
        items = []
        for t in shown:
            tid = int(t[0])
            reason = errors.get(tid) or skipped.get(tid)
            if reason is None and int(t[1]) in lost:
                reason = "worker heartbeat lost (the worker was killed or hung); re-queued"
            items.append({"trial": int(t[1]), "reason": reason or "no reason recorded"})
        return {"count": len(failed), "newest": items}

    def _running(
        self, c: Connection, trials: list[Any], now: datetime, grace: float
    ) -> list[dict[str, Any]]:
        running = [t for t in trials if t[2] == "RUNNING"]
        if not running:
            return []
        ids = [int(t[0]) for t in running]
        q = f"SELECT trial_id, heartbeat FROM trial_heartbeats WHERE trial_id IN ({_ids(ids)})"
        beats = {int(t): _naive(h) for t, h in c.execute(text(q))}
        now_utc = now.astimezone(UTC).replace(tzinfo=None)
        out = []
        for t in running:
            hb = beats.get(int(t[0]))
            age = (now_utc - hb).total_seconds() if hb is not None else None
            out.append({
                "trial": int(t[1]), "started": _iso(t[3]),
                "heartbeat_age_s": age, "stale": age is not None and age > grace,
            })  # fmt: skip
        return out

    def _arms(
        self, c: Connection, sid: int, trials: list[Any], maximize: bool
    ) -> dict[str, dict[str, Any]]:
        """Per categorical parameter, per choice: trials, complete trials, and the value
        distribution of the complete ones (mean, quartiles, best; values for plots)."""
        rows = c.execute(text(
            "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json FROM trial_params p "
            "JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :sid AND "
            "p.distribution_json LIKE '%CategoricalDistribution%'"), {"sid": sid}).all()  # fmt: skip
        value = {int(t[0]): (str(t[2]), t[5]) for t in trials}
        decoded: dict[str, list[Any] | None] = {}
        groups: dict[str, dict[str, list[Any]]] = {}
        order: dict[str, list[str]] = {}
        for tid, pname, pv, dist in rows:
            if dist not in decoded:
                decoded[dist] = _decode(dist)
            choices = decoded[dist]
            if choices is None:
                continue
            for ch in choices:  # the distribution's order, not the order first seen
                if str(ch) not in order.setdefault(pname, []):
                    order[pname].append(str(ch))
            label = str(choices[int(pv)])
            groups.setdefault(pname, {}).setdefault(label, []).append(value.get(int(tid)))
        out: dict[str, dict[str, Any]] = {}
        for pname, arms in sorted(groups.items()):
            if len(arms) < 2:
                continue  # one choice tried: nothing to compare
            out[pname] = {}
            for label in order[pname]:
                if label not in arms:
                    continue
                items = arms[label]
                vals = np.array([float(v) for s, v in items if s == "COMPLETE" and v is not None])
                out[pname][label] = {
                    "trials": len(items),
                    "complete": int(vals.size),
                    "mean": float(vals.mean()) if vals.size else None,
                    "median": float(np.median(vals)) if vals.size else None,
                    "q25": float(np.quantile(vals, 0.25)) if vals.size else None,
                    "q75": float(np.quantile(vals, 0.75)) if vals.size else None,
                    "best": (float(vals.max() if maximize else vals.min())
                             if vals.size else None),
                    "values": vals[:MAX_ARM_VALUES].tolist(),
                }  # fmt: skip
        return out

    def _rl(
        self, c: Connection, name: str, cfg: dict[str, Any], complete: list[Any],
        counts: dict[str, int],
    ) -> dict[str, Any]:  # fmt: skip
        """PBO, DSR and CPCV path Sharpes, recomputed when the number of complete trials
        changes (each needs every trial's out-of-sample returns file)."""
        key = (self.shown, name)
        hit = _RL_CACHE.get(key)
        if hit is not None and hit.n_complete == len(complete):
            return hit.rl
        from cappuccino.config.tuning import TuneConfig
        from cappuccino.tuning.report import rl_statistics

        ids = [int(t[0]) for t in complete]
        attrs: dict[int, dict[str, Any]] = {i: {} for i in ids}
        if ids:
            for tid, k, v in c.execute(text(
                f"SELECT trial_id, key, value_json FROM trial_user_attributes WHERE trial_id IN "
                f"({_ids(ids)}) AND key IN ('oos_returns', 'n_bars', 'periods_per_year')")):  # fmt: skip
                attrs[int(tid)][k] = json.loads(v)
        usable = [_Trial(int(t[1]), attrs[int(t[0])]) for t in complete
                  if "oos_returns" in attrs[int(t[0])]]  # fmt: skip
        try:
            tc = TuneConfig.model_validate(cfg | {"study_name": name})
            rl = rl_statistics(tc, usable, counts.get("COMPLETE", 0) + counts.get("PRUNED", 0))
        except (OSError, ValueError, KeyError) as exc:  # a trial's returns file moved or torn
            rl = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        _RL_CACHE[key] = _Cache(len(complete), rl)
        return rl


@dataclass
class _Trial:
    """What :func:`rl_statistics` reads of a trial."""

    number: int
    user_attrs: dict[str, Any]


def _ids(ids: list[int]) -> str:
    return ", ".join(str(int(i)) for i in ids)


def _naive(value: Any) -> datetime | None:
    if value is None:
        return None
    v: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return v if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)


def _iso(value: Any) -> str | None:
    v = _naive(value)
    return None if v is None else v.isoformat()


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _naive(start), _naive(end)
    return None if a is None or b is None else (b - a).total_seconds()


def _rate(trials: list[Any], now: datetime) -> dict[str, Any]:
    """Finished trials per hour: over the last hour, and over the study's life."""
    ends = [_naive(t[4]) for t in trials if t[2] in ("COMPLETE", "PRUNED", "FAIL")]
    ends_ = [e for e in ends if e is not None]
    starts = [s for s in (_naive(t[3]) for t in trials) if s is not None]
    local_now = now.astimezone().replace(tzinfo=None)  # the workers write local time
    last_hour = sum(1 for e in ends_ if local_now - timedelta(hours=1) < e <= local_now)
    overall = None
    if ends_ and starts:
        hours = (max(ends_) - min(starts)).total_seconds() / 3600
        overall = len(ends_) / hours if hours > 0 else None
    return {"last_hour": last_hour, "overall_per_hour": overall}


def _history(complete: list[Any], maximize: bool) -> dict[str, list[Any]]:
    """Complete trials' values and the best so far, by trial number (thinned for plots)."""
    nums = np.array([int(t[1]) for t in complete], dtype=np.int64)
    vals = np.array([float(t[5]) for t in complete], dtype=np.float64)
    if not vals.size:
        return {"trial": [], "value": [], "best": []}
    best = np.maximum.accumulate(vals) if maximize else np.minimum.accumulate(vals)
    k = thin(vals.size)
    return {"trial": nums[k].tolist(), "value": vals[k].tolist(), "best": best[k].tolist()}
