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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from cappuccino.config.secrets import storage_url
from cappuccino.monitoring.paper import thin

SCHEMA_VERSION = 12
"""Optuna's storage schema version (``version_info``) this reader understands."""
TOP = 5
MAX_FAILURES = 20
MAX_ARM_VALUES = 2000
DEFAULT_GRACE_S = 120.0
"""Heartbeat silence after which a running trial is stale, when the study stores no config
(Optuna's and Cappuccino's default ``grace_period``)."""


_DONE = (
    "FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
    "WHERE t.study_id = :sid AND t.state = 'COMPLETE' AND v.value IS NOT NULL"
)
"""The complete trials of a study, with their value (after the selected columns)."""


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

    def check(self) -> None:
        """Fail now on a storage that is not one (:class:`StorageError`, exit 2) or cannot be
        reached (exit 3), before any view starts."""
        self._read(lambda c: c.execute(text("SELECT COUNT(*) FROM studies")).scalar())

    def snapshot(self, now: datetime, *, rl_stats: bool = True) -> list[dict[str, Any]]:
        """One document per study (see the module docstring)."""

        def read(c: Connection) -> list[dict[str, Any]]:
            studies = c.execute(text("SELECT study_id, study_name FROM studies "
                                     "ORDER BY study_id")).all()  # fmt: skip
            return [self._study(c, int(sid), str(name), now, rl_stats) for sid, name in studies]

        return self._read(read)  # type: ignore[no-any-return]

    def _read(self, fn: Any) -> Any:
        try:
            with self.engine.connect() as c:
                self._check_schema(c)
                return fn(c)
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
        p: dict[str, Any] = {"sid": sid}
        attrs = {k: json.loads(v) for k, v in c.execute(text(
            "SELECT key, value_json FROM study_user_attributes WHERE study_id = :sid"), p)}  # fmt: skip
        cfg = attrs.get("config") or {}
        direction = (c.execute(text("SELECT direction FROM study_directions WHERE study_id = :sid "
                                    "AND objective = 0"), p).scalar() or "MAXIMIZE")  # fmt: skip
        maximize = str(direction).upper().endswith("MAXIMIZE")
        counts = {str(k): int(n) for k, n in c.execute(text(
            "SELECT state, COUNT(*) FROM trials WHERE study_id = :sid GROUP BY state"), p)}  # fmt: skip
        finished = sum(counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
        order = "DESC" if maximize else "ASC"
        top = [tuple(r) for r in c.execute(text(
            f"SELECT t.trial_id, t.number, v.value, t.datetime_start, t.datetime_complete {_DONE} "
            f"ORDER BY v.value {order}, t.number LIMIT {TOP}"), p)]  # fmt: skip
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
            "trials": sum(counts.values()),
            "finished": finished,
            "pruned_share": counts.get("PRUNED", 0) / finished if finished else None,
            "best": None,
            "top_trials": [
                {"trial": int(t[1]), "value": float(t[2]), "params": params.get(int(t[0]), {}),
                 "bundle": bundles.get(int(t[0])), "seconds": _seconds(t[3], t[4])}
                for t in top
            ],
        }  # fmt: skip
        if top:
            doc["best"] = doc["top_trials"][0]
        doc["rate"] = self._rate(c, p, now)
        doc["failures"] = self._failures(c, p, counts.get("FAIL", 0), attrs)
        grace = float((cfg.get("storage") or {}).get("grace_period", DEFAULT_GRACE_S))
        doc["running"] = self._running(c, p, now, grace)
        doc["arms"] = self._arms(c, p, maximize)
        doc["history"] = self._history(c, p, maximize)
        stale = [r for r in doc["running"] if r["stale"]]
        doc["health"] = {
            "status": "amber" if stale else "ok",
            "reasons": [f"trial {r['trial']}: heartbeat {r['heartbeat_age_s']:.0f} s old, "
                        f"limit {grace:.0f} s (worker dead or hung)" for r in stale],
        }  # fmt: skip
        doc["rl"] = None
        if kind == "rl" and rl_stats:
            complete = [tuple(r) for r in c.execute(text(f"SELECT t.trial_id, t.number {_DONE} "
                                                         "ORDER BY t.number"), p)]  # fmt: skip
            doc["rl"] = self._rl(c, name, cfg, complete, counts)
        doc["units"] = (f"values: {metric}; trials_per_hour: finished trials per hour; "
                        "pruned_share: PRUNED / (COMPLETE + PRUNED + FAIL); ages in seconds")  # fmt: skip
        return doc

    def _bind_time(self, t: datetime) -> Any:
        """A naive time as the dialect compares it with Optuna's ``DateTime`` columns."""
        if self.engine.dialect.name == "sqlite":  # stored as text: compare as text
            return t.isoformat(sep=" ", timespec="microseconds")
        return t

    def _rate(self, c: Connection, p: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Finished trials per hour: over the last hour, and over the study's life (the
        workers write local time)."""
        local_now = now.astimezone().replace(tzinfo=None)
        q = {**p, "since": self._bind_time(local_now - timedelta(hours=1)),
             "until": self._bind_time(local_now)}  # fmt: skip
        last_hour, n, first, last = c.execute(text(
            "SELECT COALESCE(SUM(CASE WHEN datetime_complete > :since AND datetime_complete <= "
            ":until THEN 1 ELSE 0 END), 0), COUNT(datetime_complete), MIN(datetime_start), "
            "MAX(datetime_complete) FROM trials WHERE study_id = :sid AND state IN "
            "('COMPLETE', 'PRUNED', 'FAIL')"), q).one()  # fmt: skip
        overall = None
        a, b = _naive(first), _naive(last)
        if n and a is not None and b is not None and b > a:
            overall = int(n) / ((b - a).total_seconds() / 3600)
        return {"last_hour": int(last_hour), "overall_per_hour": overall}

    def _history(self, c: Connection, p: dict[str, Any], maximize: bool) -> dict[str, list[Any]]:
        """Complete trials' values and the best so far, by trial number (thinned for plots)."""
        rows = c.execute(text(f"SELECT t.number, v.value {_DONE} ORDER BY t.number"), p).all()
        if not rows:
            return {"trial": [], "value": [], "best": []}
        nums = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vals = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        best = np.maximum.accumulate(vals) if maximize else np.minimum.accumulate(vals)
        k = thin(vals.size)
        return {"trial": nums[k].tolist(), "value": vals[k].tolist(), "best": best[k].tolist()}

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

    def _failures(
        self, c: Connection, p: dict[str, Any], count: int, attrs: dict[str, Any]
    ) -> dict[str, Any]:
        shown = [tuple(r) for r in c.execute(text(
            "SELECT trial_id, number FROM trials WHERE study_id = :sid AND state = 'FAIL' "
            f"ORDER BY number DESC LIMIT {MAX_FAILURES}"), p)][::-1]  # fmt: skip
        ids = [int(t[0]) for t in shown]
        errors = self._user_attr(c, ids, "error")
        skipped = self._user_attr(c, ids, "skipped")
        lost = set(attrs.get("heartbeat_lost", []))
        items = []
        for tid, number in shown:
            reason = errors.get(int(tid)) or skipped.get(int(tid))
            if reason is None and int(number) in lost:
                reason = "worker heartbeat lost (the worker was killed or hung); re-queued"
            items.append({"trial": int(number), "reason": reason or "no reason recorded"})
        return {"count": count, "newest": items}

    def _running(
        self, c: Connection, p: dict[str, Any], now: datetime, grace: float
    ) -> list[dict[str, Any]]:
        running = [tuple(r) for r in c.execute(text(
            "SELECT t.number, t.datetime_start, h.heartbeat FROM trials t LEFT JOIN "
            "trial_heartbeats h ON h.trial_id = t.trial_id WHERE t.study_id = :sid AND "
            "t.state = 'RUNNING' ORDER BY t.number"), p)]  # fmt: skip
        now_utc = now.astimezone(UTC).replace(tzinfo=None)
        out = []
        for number, started, beat in running:
            hb = _naive(beat)
            age = (now_utc - hb).total_seconds() if hb is not None else None
            out.append({
                "trial": int(number), "started": _iso(started),
                "heartbeat_age_s": age, "stale": age is not None and age > grace,
            })  # fmt: skip
        return out

    def _arms(self, c: Connection, p: dict[str, Any], maximize: bool) -> dict[str, dict[str, Any]]:
        """Per categorical parameter, per choice: trials, complete trials, and the value
        distribution of the complete ones (mean, quartiles, best; values for plots)."""
        # Aggregated in SQL: per (parameter, choice) the trials and the complete ones, then
        # the complete values in the same order, split by those counts. Optuna writes a
        # distribution as {"name": ..., "attributes": ...}: a prefix test stops at the name
        # (a LIKE '%...%' reads every JSON text to its end).
        frm = ("FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id LEFT JOIN "
               "trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 WHERE "
               "t.study_id = :sid AND p.distribution_json LIKE :prefix")  # fmt: skip
        done = "t.state = 'COMPLETE' AND v.value IS NOT NULL"
        q = {**p, "prefix": '{"name": "CategoricalDistribution"%'}
        groups = c.execute(text(
            f"SELECT p.param_name, p.param_value, MIN(p.distribution_json), COUNT(*), "
            f"SUM(CASE WHEN {done} THEN 1 ELSE 0 END) {frm} GROUP BY p.param_name, "
            "p.param_value ORDER BY p.param_name, p.param_value"), q).all()  # fmt: skip
        rows = c.execute(text(f"SELECT v.value {frm} AND {done} ORDER BY p.param_name, "
                              "p.param_value"), q).all()  # fmt: skip
        flat = np.fromiter((r[0] for r in rows), dtype=np.float64, count=len(rows))
        choices: dict[str, list[str]] = {}
        n_tried: dict[str, dict[str, int]] = {}
        vals: dict[str, dict[str, list[float]]] = {}
        decoded: dict[str, list[Any] | None] = {}
        at = 0
        for pname, pv, dist, n, n_done in groups:
            part, at = flat[at : at + int(n_done)], at + int(n_done)
            if dist not in decoded:
                decoded[dist] = _decode(dist)
            ch = decoded[dist]
            if ch is None:
                continue
            order = choices.setdefault(pname, [])
            order += [str(x) for x in ch if str(x) not in order]  # the distribution's order
            label = str(ch[int(pv)])
            arm = n_tried.setdefault(pname, {})
            arm[label] = arm.get(label, 0) + int(n)
            vals.setdefault(pname, {}).setdefault(label, []).extend(part.tolist())
        out: dict[str, dict[str, Any]] = {}
        for pname in sorted(n_tried):
            arms = n_tried[pname]
            if len(arms) < 2:
                continue  # one choice tried: nothing to compare
            out[pname] = {}
            for label in choices[pname]:
                if label not in arms:
                    continue
                a = np.array(vals.get(pname, {}).get(label, []), dtype=np.float64)
                out[pname][label] = {
                    "trials": arms[label],
                    "complete": int(a.size),
                    "mean": float(a.mean()) if a.size else None,
                    "median": float(np.median(a)) if a.size else None,
                    "q25": float(np.quantile(a, 0.25)) if a.size else None,
                    "q75": float(np.quantile(a, 0.75)) if a.size else None,
                    "best": (float(a.max() if maximize else a.min()) if a.size else None),
                    "values": a[:MAX_ARM_VALUES].tolist(),
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
