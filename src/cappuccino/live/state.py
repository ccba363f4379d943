"""The state of one paper or live session: SQLite in WAL mode, SQLAlchemy models, alembic
migrations.

One file holds one session (table ``run``, one row) and everything it did:

- ``decisions``: one per processed bar (idempotent on the bar's timestamp);
- ``intents``: an order the runner is about to submit, **committed before the submit**, with
  its deterministic client order id (:func:`client_order_id` of run, bar, symbol and leg);
- ``orders``: what the broker says of each intent (status, filled quantity); an order whose
  submit timed out is ``UNKNOWN`` until it is looked up by its client order id;
- ``fills``: executions, idempotent by the broker's trade id (a fill reported twice is
  stored once);
- ``positions`` and ``equity``: the book after each bar.

A state file belongs to one mode (``dry_run``, ``paper`` or ``live``): opening it in another
is an error, so a dry run can never resume a paper session or the reverse. The schema is
created and upgraded by the migrations in ``live/migrations`` (``alembic upgrade head`` on
open). Quantities and prices are floats in the asset's and the quote currency's units.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cappuccino.live.broker import FINAL_STATES, ORDER_STATES

Mode = Literal["dry_run", "paper", "live"]
MODES: tuple[str, ...] = ("dry_run", "paper", "live")
Side = Literal["buy", "sell"]
MIGRATIONS = Path(__file__).parent / "migrations"


BROKER_DOWN, BROKER_UP = "broker_unreachable", "broker_reachable"
"""Event kinds the runner records when its broker stops and starts answering."""


class StateError(ValueError):
    """A state file that cannot serve this run (another mode, another run, a newer schema)."""


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored naive in UTC (SQLite has no time zones); a naive value
    is refused, so no local time slips in."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"got naive {value.isoformat()}, expected a UTC timestamp")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class RunRow(Base):
    __tablename__ = "run"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    broker: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(512))
    symbols: Mapped[list[str]] = mapped_column(JSON)
    timeframe: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    starting_cash: Mapped[float | None] = mapped_column(Float, nullable=True)
    starting_equity: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_bar: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(256), nullable=True)
    starting_positions: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    reconcile: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class DecisionRow(Base):
    __tablename__ = "decisions"
    bar: Mapped[datetime] = mapped_column(primary_key=True)
    decided_at: Mapped[datetime]
    target_units: Mapped[dict[str, float]] = mapped_column(JSON)
    equity: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(String(512), default="")
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class IntentRow(Base):
    __tablename__ = "intents"
    client_order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bar: Mapped[datetime] = mapped_column(index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    leg: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime]


class OrderRow(Base):
    __tablename__ = "orders"
    client_order_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("intents.client_order_id"), primary_key=True
    )
    broker_order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    filled_qty: Mapped[float] = mapped_column(Float, default=0.0)
    avg_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(512), default="")


class FillRow(Base):
    __tablename__ = "fills"
    trade_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("intents.client_order_id"), index=True
    )
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime]


class PositionRow(Base):
    __tablename__ = "positions"
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    qty: Mapped[float] = mapped_column(Float)
    bar: Mapped[datetime]


class EquityRow(Base):
    __tablename__ = "equity"
    bar: Mapped[datetime] = mapped_column(primary_key=True)
    cash: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    prices: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(2048))


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


# The statements the runner issues on every bar, as plain SQL on the session's own DBAPI
# connection (the same transaction): SQLAlchemy's per-statement overhead was most of a
# replayed bar's time. Values are stored exactly as the ORM stores them (``_db_time``,
# ``_db_json``), so every read goes through the models unchanged.
_UPSERT_POSITION = ("INSERT INTO positions (symbol, qty, bar) VALUES (?, ?, ?) "
                    "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, bar = excluded.bar")  # fmt: skip
_INSERT_EQUITY = ("INSERT INTO equity (bar, cash, equity, prices) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (bar) DO NOTHING")  # fmt: skip
_UPDATE_ORDER = ("UPDATE orders SET status = ?, updated_at = ?, final = ?, "
                 "broker_order_id = COALESCE(?, broker_order_id), "
                 "filled_qty = COALESCE(?, filled_qty), avg_price = COALESCE(?, avg_price), "
                 "reason = COALESCE(?, reason) WHERE client_order_id = ? AND NOT final")  # fmt: skip
_INSERT_DECISION = ("INSERT INTO decisions (bar, decided_at, target_units, equity, note, skipped) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bar) DO NOTHING")  # fmt: skip
_INSERT_INTENT = ("INSERT INTO intents (client_order_id, bar, symbol, leg, side, qty, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
_INSERT_ORDER = ("INSERT INTO orders (client_order_id, broker_order_id, status, filled_qty, "
                 "avg_price, final, updated_at, reason) VALUES (?, NULL, 'PENDING', 0.0, NULL, 0, "
                 "?, '')")  # fmt: skip
_INSERT_FILL = ("INSERT INTO fills (trade_id, client_order_id, symbol, side, qty, price, fee, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trade_id) DO NOTHING")  # fmt: skip


def _db_time(value: datetime) -> str:
    """An aware datetime as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC)."""
    if value.tzinfo is None:
        raise ValueError(f"got naive {value.isoformat()}, expected a UTC timestamp")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _db_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _dbapi(s: Session) -> Any:
    """The DBAPI connection under the session's transaction."""
    return s.connection().connection.dbapi_connection


def client_order_id(run_id: str, bar: datetime, symbol: str, leg: int) -> str:
    """The order's id at the broker, the same on every retry and restart: ``cap`` and 32 hex
    digits of SHA-256 over (run, bar in UTC, symbol, leg); 35 characters, within both
    Alpaca's 128 and Binance's 36 (``[.A-Z:/a-z0-9_-]``)."""
    if bar.tzinfo is None:
        raise ValueError(f"bar: got naive {bar.isoformat()}, expected a UTC timestamp")
    key = f"{run_id}|{bar.astimezone(UTC).isoformat()}|{symbol}|{leg}"
    return "cap" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _wal(engine: Engine, synchronous: str = "FULL") -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers (status, monitor) never block it
        # FULL: a committed intent survives a power loss; NORMAL (dry runs): a process crash
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def _alembic() -> Any:
    """The alembic config of the state's migrations (no ini file, no URL)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _revisions() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic())


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    from alembic import command

    cfg = _alembic()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration's revision id (read once per process)."""
    return str(_revisions().get_current_head())


class SessionState:
    """One session's state file (see the module docstring)."""

    def __init__(self, path: Path, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: got {mode!r}, expected one of {', '.join(MODES)}")
        self.path, self.mode = Path(path), mode
        self._batch: Session | None = None
        self._run_id: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(f"sqlite:///{self.path}")
        _wal(self.engine, "NORMAL" if mode == "dry_run" else "FULL")
        self._check_revision()
        upgrade(self.engine)
        run = self.run()
        if run is not None and run.mode != mode:
            raise StateError(
                f"{self.path}: got a {run.mode} session's state, expected a {mode} one "
                f"(dry runs and paper/live runs keep separate state files)"
            )

    @classmethod
    def reader(cls, path: Path) -> SessionState:
        """The state for reading only (``paper status``, monitors): a read-only connection,
        no migration, no lock; :class:`StateError` if the schema is not the newest."""
        self = cls.__new__(cls)
        self.path, self._batch, self._run_id = Path(path), None, None
        self.engine = create_engine(f"sqlite:///file:{self.path}?mode=ro&uri=true")
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy.exc import DatabaseError

        try:
            with self.engine.connect() as c:
                current = MigrationContext.configure(c).get_current_revision()
        except DatabaseError as exc:
            raise StateError(f"{self.path}: not a session state file ({exc.orig})") from exc
        if current != head_revision():
            raise StateError(
                f"{self.path}: schema revision {current!r}, expected {head_revision()!r} "
                "(resume the session with `paper run` once to upgrade it)"
            )
        run = self.run()
        self.mode = run.mode if run is not None else "dry_run"  # type: ignore[assignment]
        return self

    def _check_revision(self) -> None:
        """Refuse a file written by a newer version (its schema is not ours to downgrade)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as c:
            current = MigrationContext.configure(c).get_current_revision()
        if current is None:
            return
        known = {s.revision for s in _revisions().walk_revisions()}
        if current not in known:
            raise StateError(
                f"{self.path}: schema revision {current!r}, expected one of {sorted(known)} "
                "(written by a newer cappuccino?)"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on exit, rolled back on an exception. Inside
        :meth:`batch`, the batch's transaction (committed when the batch ends)."""
        if self._batch is not None:
            yield self._batch
            return
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def batch(self) -> Iterator[Session]:
        """Group every call inside into one transaction: all of it is committed, or none."""
        if self._batch is not None:
            yield self._batch
            return
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            self._batch = s
            try:
                yield s
            finally:
                self._batch = None

    # -- the run ---------------------------------------------------------------------------
    def _load_run_id(self) -> str:
        run = self.run()
        if run is None:
            raise StateError(f"{self.path}: no session started")
        self._run_id = run.id
        return run.id

    def run(self) -> RunRow | None:
        with self.session() as s:
            return s.scalars(select(RunRow)).first()

    def start(
        self, *, run_id: str, broker: str, policy: str, symbols: list[str], timeframe: str,
        now: datetime, rules: dict[str, Any] | None = None,
    ) -> RunRow:  # fmt: skip
        """The session's row: created on the first start, checked on a resume (the same
        broker, policy, symbols, timeframe and market rules, or :class:`StateError`). A
        resume clears the previous end."""
        with self.session() as s:
            row = s.scalars(select(RunRow)).first()
            if row is None:
                row = RunRow(id=run_id, mode=self.mode, broker=broker, policy=policy,
                             symbols=list(symbols), timeframe=timeframe, created_at=now,
                             rules=rules)  # fmt: skip
                s.add(row)
                return row
            want = {"broker": broker, "policy": policy, "symbols": list(symbols),
                    "timeframe": timeframe, "rules": rules}  # fmt: skip
            for key, value in want.items():
                if getattr(row, key) != value:
                    raise StateError(
                        f"{self.path}: {key}: got {value!r}, expected {getattr(row, key)!r} "
                        "(the session this file holds; start a new one with another --state)"
                    )
            row.ended_at, row.end_reason = None, None
            return row

    def set_starting_account(
        self, cash: float, equity: float, positions: dict[str, float] | None = None
    ) -> None:
        """Record the broker account at the session's first start (never overwritten)."""
        with self.session() as s:
            row = s.scalars(select(RunRow)).one()
            if row.starting_equity is None:
                row.starting_cash, row.starting_equity = cash, equity
                row.starting_positions = dict(positions or {})

    def end(self, now: datetime, reason: str) -> None:
        """The session stopped cleanly (a finished replay, --max-bars, a signal)."""
        with self.session() as s:
            row = s.scalars(select(RunRow)).one()
            row.ended_at, row.end_reason, row.heartbeat_at = now, reason, now

    def set_reconcile(self, outcome: dict[str, Any]) -> None:
        with self.session() as s:
            s.scalars(select(RunRow)).one().reconcile = outcome

    def event(self, now: datetime, kind: str, detail: str) -> None:
        """Log a repair, a refusal or another notable outcome (kept with the session)."""
        with self.session() as s:
            s.add(EventRow(at=now, kind=kind, detail=detail[:2048]))

    def broker_down(self) -> bool:
        """Whether the runner's last word on its broker is :data:`BROKER_DOWN`."""
        with self.session() as s:
            last = s.scalars(
                select(EventRow.kind).where(EventRow.kind.in_((BROKER_DOWN, BROKER_UP)))
                .order_by(EventRow.id.desc()).limit(1)
            ).first()  # fmt: skip
        return last == BROKER_DOWN

    def events(self) -> list[EventRow]:
        with self.session() as s:
            return list(s.scalars(select(EventRow).order_by(EventRow.id)))

    def heartbeat(
        self, now: datetime, last_bar: datetime | None = None,
        reconcile: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """The runner is alive at ``now``; with ``last_bar``, that bar is processed; with
        ``reconcile``, the bar's reconciliation outcome (one UPDATE of the run row)."""
        sets, params = ["heartbeat_at = ?"], [_db_time(now)]
        if last_bar is not None:
            sets.append("last_bar = ?")
            params.append(_db_time(last_bar))
        if reconcile is not None:
            sets.append("reconcile = ?")
            params.append(json.dumps(reconcile))
        with self.session() as s:
            _dbapi(s).execute(f"UPDATE run SET {', '.join(sets)}", params)

    # -- intents, orders, fills ------------------------------------------------------------
    def record_intent(
        self, bar: datetime, symbol: str, leg: int, side: Side, qty: float, now: datetime
    ) -> IntentRow:
        """Commit the intent (and its PENDING order) before the submit; the same (bar,
        symbol, leg) returns the intent already stored, unchanged."""
        if side not in ("buy", "sell") or not qty > 0:
            raise ValueError(f"intent: got side {side!r}, qty {qty!r}, expected buy/sell and > 0")
        run = self.run()
        if run is None:
            raise StateError(f"{self.path}: no session started")
        cid = client_order_id(run.id, bar, symbol, leg)
        with self.session() as s:
            found = s.get(IntentRow, cid)
            if found is not None:
                return found
            intent = IntentRow(client_order_id=cid, bar=bar, symbol=symbol, leg=leg, side=side,
                               qty=qty, created_at=now)  # fmt: skip
            s.add(intent)
            s.add(OrderRow(client_order_id=cid, status="PENDING", filled_qty=0.0, final=False,
                           updated_at=now))  # fmt: skip
            return intent

    def update_order(
        self, cid: str, status: str, now: datetime, *, broker_order_id: str | None = None,
        filled_qty: float | None = None, avg_price: float | None = None, reason: str = "",
    ) -> OrderRow:  # fmt: skip
        """Set what the broker says of an order; a final order never changes again."""
        if status not in ORDER_STATES:
            raise ValueError(f"status: got {status!r}, expected one of {', '.join(ORDER_STATES)}")
        self.update_orders([{"cid": cid, "status": status, "now": now,
                             "broker_order_id": broker_order_id, "filled_qty": filled_qty,
                             "avg_price": avg_price, "reason": reason}])  # fmt: skip
        table = _table(OrderRow)
        with self.session() as s:
            got = (
                s.connection().execute(select(table).where(table.c.client_order_id == cid)).first()
            )
        if got is None:
            raise StateError(f"{self.path}: no intent with client order id {cid!r}")
        return OrderRow(**got._mapping)

    def update_orders(self, updates: list[dict[str, Any]]) -> None:
        """Several :meth:`update_order` calls as one statement (``cid``, ``status``, ``now``
        and optional ``broker_order_id``, ``filled_qty``, ``avg_price``, ``reason``); a final
        order is left as it is."""
        rows = []
        for u in updates:
            if u["status"] not in ORDER_STATES:
                raise ValueError(f"status: got {u['status']!r}, expected one of "
                                 f"{', '.join(ORDER_STATES)}")  # fmt: skip
            rows.append((u["status"], _db_time(u["now"]), int(u["status"] in FINAL_STATES),
                         u.get("broker_order_id"), u.get("filled_qty"), u.get("avg_price"),
                         (u.get("reason") or "")[:512] or None, u["cid"]))  # fmt: skip
        if rows:
            with self.session() as s:
                _dbapi(s).executemany(_UPDATE_ORDER, rows)

    def record_fill(
        self, trade_id: str, cid: str, symbol: str, side: Side, qty: float, price: float,
        fee: float, at: datetime,
    ) -> bool:  # fmt: skip
        """Store an execution once: True when it is new, False when this trade id is known."""
        with self.session() as s:
            if s.get(FillRow, trade_id) is not None:
                return False
            if s.get(IntentRow, cid) is None:
                raise StateError(f"{self.path}: fill {trade_id!r} for unknown order {cid!r}")
            s.add(FillRow(trade_id=trade_id, client_order_id=cid, symbol=symbol, side=side,
                          qty=qty, price=price, fee=fee, at=at))  # fmt: skip
            return True

    def record_fills(self, fills: list[FillRow]) -> int:
        """Store several executions in one transaction; the number that were new (a trade id
        already stored is skipped, so a fill reported twice counts once)."""
        import sqlite3

        rows = [(f.trade_id, f.client_order_id, f.symbol, f.side, f.qty, f.price, f.fee,
                 _db_time(f.at)) for f in fills]  # fmt: skip
        if not rows:
            return 0
        with self.session() as s:
            db = _dbapi(s)
            try:
                # rowcount: the rows this statement inserted (not the summary trigger's update)
                cur = db.executemany(_INSERT_FILL, rows)
            except sqlite3.IntegrityError:
                known = set(s.scalars(select(IntentRow.client_order_id)))
                bad = next(f for f in fills if f.client_order_id not in known)
                raise StateError(f"{self.path}: fill {bad.trade_id!r} for unknown order "
                                 f"{bad.client_order_id!r}") from None  # fmt: skip
            return int(cur.rowcount)

    def fill_totals(self) -> tuple[dict[str, float], float, datetime | None]:
        """Net units per symbol (buys minus sells) and the cash the fills moved (sells' proceeds
        minus buys' cost, less fees), summed in SQL; the newest fill's time."""
        from sqlalchemy import case, func

        sign = case((FillRow.side == "buy", 1.0), else_=-1.0)
        with self.session() as s:
            rows = s.execute(
                select(FillRow.symbol, func.sum(sign * FillRow.qty),
                       func.sum(-sign * FillRow.qty * FillRow.price - FillRow.fee))
                .group_by(FillRow.symbol)
            ).all()  # fmt: skip
            newest = s.scalar(select(func.max(FillRow.at)))
        units = {str(r[0]): float(r[1]) for r in rows}
        return units, float(sum(r[2] for r in rows)), newest

    def intents(self, bar: datetime | None = None) -> list[IntentRow]:
        with self.session() as s:
            q = select(IntentRow).order_by(IntentRow.bar, IntentRow.leg, IntentRow.symbol)
            if bar is not None:
                q = q.where(IntentRow.bar == bar)
            return list(s.scalars(q))

    def order(self, cid: str) -> OrderRow | None:
        with self.session() as s:
            return s.get(OrderRow, cid)

    def orders(self) -> list[tuple[IntentRow, OrderRow]]:
        with self.session() as s:
            rows = s.execute(
                select(IntentRow, OrderRow)
                .join(OrderRow, OrderRow.client_order_id == IntentRow.client_order_id)
                .order_by(IntentRow.bar, IntentRow.symbol, IntentRow.leg)
            ).all()
            return [(i, o) for i, o in rows]

    def unresolved(self) -> list[str]:
        """Client order ids whose state is not final (to look up at the broker)."""
        with self.session() as s:
            return list(s.scalars(select(OrderRow.client_order_id).where(~OrderRow.final)))

    def fills(self, cid: str | None = None) -> list[FillRow]:
        with self.session() as s:
            q = select(FillRow).order_by(FillRow.at, FillRow.trade_id)
            if cid is not None:
                q = q.where(FillRow.client_order_id == cid)
            return list(s.scalars(q))

    # -- decisions and the book --------------------------------------------------------------
    def decision(self, bar: datetime) -> DecisionRow | None:
        with self.session() as s:
            return s.get(DecisionRow, bar)

    def record_decision(
        self, bar: datetime, target_units: dict[str, float], equity: float, now: datetime,
        note: str = "",
    ) -> bool:  # fmt: skip
        """One decision per bar: True when recorded, False when this bar was decided."""
        with self.session() as s:
            if s.get(DecisionRow, bar) is not None:
                return False
            s.add(DecisionRow(bar=bar, decided_at=now, target_units=dict(target_units),
                              equity=equity, note=note))  # fmt: skip
            return True

    def record_plan(
        self, bar: datetime, target_units: dict[str, float], equity: float,
        orders: list[tuple[str, int, Side, float]], now: datetime, *, note: str = "",
        skipped: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, list[IntentRow]]:  # fmt: skip
        """The bar's decision and its intents ``(symbol, leg, side, qty)``, each with a PENDING
        order, in **one** transaction, before any submit: a crash leaves either nothing or the
        whole plan. A bar already decided returns ``(False, its intents)`` unchanged."""
        run_id = self._run_id or self._load_run_id()
        with self.session() as s:
            db = _dbapi(s)
            cur = db.execute(_INSERT_DECISION, (_db_time(bar), _db_time(now),
                                                json.dumps(dict(target_units)), equity, note,
                                                json.dumps(list(skipped or []))))  # fmt: skip
            if cur.rowcount == 0:  # decided before
                q = select(IntentRow).where(IntentRow.bar == bar)
                return False, list(s.scalars(q.order_by(IntentRow.leg, IntentRow.symbol)))
            out = []
            for symbol, leg, side, qty in orders:
                if side not in ("buy", "sell") or not qty > 0:
                    raise ValueError(f"intent {symbol}: got side {side!r}, qty {qty!r}, "
                                     "expected buy/sell and > 0")  # fmt: skip
                cid = client_order_id(run_id, bar, symbol, leg)
                out.append(IntentRow(client_order_id=cid, bar=bar, symbol=symbol, leg=leg,
                                     side=side, qty=qty, created_at=now))  # fmt: skip
            if out:
                b, t = _db_time(bar), _db_time(now)
                db.executemany(_INSERT_INTENT, [(i.client_order_id, b, i.symbol, i.leg, i.side,
                                                 i.qty, t) for i in out])  # fmt: skip
                db.executemany(_INSERT_ORDER, [(i.client_order_id, t) for i in out])
            return True, out

    def decisions(self) -> list[DecisionRow]:
        with self.session() as s:
            return list(s.scalars(select(DecisionRow).order_by(DecisionRow.bar)))

    def n_decisions(self) -> int:
        from sqlalchemy import func

        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(DecisionRow)) or 0)

    def equity_rows(self) -> list[EquityRow]:
        with self.session() as s:
            return list(s.scalars(select(EquityRow).order_by(EquityRow.bar)))

    def record_book(
        self, bar: datetime, cash: float, equity: float, positions: dict[str, float],
        *, prices: dict[str, float] | None = None,
    ) -> None:  # fmt: skip
        """The book after ``bar``: positions (quantity per symbol) and equity; idempotent (a
        bar's equity row is written once)."""
        b = _db_time(bar)
        with self.session() as s:
            db = _dbapi(s)
            if positions:
                db.executemany(_UPSERT_POSITION, [(k, q, b) for k, q in positions.items()])
            db.execute(_INSERT_EQUITY, (b, cash, equity, _db_json(prices)))

    def decided_bars(self) -> set[datetime]:
        with self.session() as s:
            return set(s.scalars(select(DecisionRow.bar)))

    def trade_ids(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(FillRow.trade_id)))

    def positions(self) -> dict[str, float]:
        with self.session() as s:
            return {r.symbol: r.qty for r in s.scalars(select(PositionRow))}
