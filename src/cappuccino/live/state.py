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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

Mode = Literal["dry_run", "paper", "live"]
MODES: tuple[str, ...] = ("dry_run", "paper", "live")
Side = Literal["buy", "sell"]
# broker order states; FINAL ones never change again
ORDER_STATES = ("PENDING", "SUBMITTED", "UNKNOWN", "ACCEPTED", "PARTIALLY_FILLED", "FILLED",
                "CANCELED", "REJECTED", "EXPIRED")  # fmt: skip
FINAL_STATES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})
MIGRATIONS = Path(__file__).parent / "migrations"


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


class DecisionRow(Base):
    __tablename__ = "decisions"
    bar: Mapped[datetime] = mapped_column(primary_key=True)
    decided_at: Mapped[datetime]
    target_units: Mapped[dict[str, float]] = mapped_column(JSON)
    equity: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(String(512), default="")


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


def client_order_id(run_id: str, bar: datetime, symbol: str, leg: int) -> str:
    """The order's id at the broker, the same on every retry and restart: ``cap`` and 32 hex
    digits of SHA-256 over (run, bar in UTC, symbol, leg); 35 characters, within both
    Alpaca's 128 and Binance's 36 (``[.A-Z:/a-z0-9_-]``)."""
    if bar.tzinfo is None:
        raise ValueError(f"bar: got naive {bar.isoformat()}, expected a UTC timestamp")
    key = f"{run_id}|{bar.astimezone(UTC).isoformat()}|{symbol}|{leg}"
    return "cap" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _wal(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers (status, monitor) never block it
        cur.execute("PRAGMA synchronous=FULL")  # a committed intent survives a crash
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


def head_revision() -> str:
    """The newest migration's revision id."""
    return str(_revisions().get_current_head())


class SessionState:
    """One session's state file (see the module docstring)."""

    def __init__(self, path: Path, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: got {mode!r}, expected one of {', '.join(MODES)}")
        self.path, self.mode = Path(path), mode
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(f"sqlite:///{self.path}")
        _wal(self.engine)
        self._check_revision()
        upgrade(self.engine)
        run = self.run()
        if run is not None and run.mode != mode:
            raise StateError(
                f"{self.path}: got a {run.mode} session's state, expected a {mode} one "
                f"(dry runs and paper/live runs keep separate state files)"
            )

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
        """A transaction: committed on exit, rolled back on an exception."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> RunRow | None:
        with self.session() as s:
            return s.scalars(select(RunRow)).first()

    def start(
        self, *, run_id: str, broker: str, policy: str, symbols: list[str], timeframe: str,
        now: datetime,
    ) -> RunRow:  # fmt: skip
        """The session's row: created on the first start, checked on a resume (the same
        broker, policy, symbols and timeframe, or :class:`StateError`)."""
        with self.session() as s:
            row = s.scalars(select(RunRow)).first()
            if row is None:
                row = RunRow(id=run_id, mode=self.mode, broker=broker, policy=policy,
                             symbols=list(symbols), timeframe=timeframe, created_at=now)  # fmt: skip
                s.add(row)
                return row
            want = {"broker": broker, "policy": policy, "symbols": list(symbols),
                    "timeframe": timeframe}  # fmt: skip
            for key, value in want.items():
                if getattr(row, key) != value:
                    raise StateError(
                        f"{self.path}: {key}: got {value!r}, expected {getattr(row, key)!r} "
                        "(the session this file holds; start a new one with another --state)"
                    )
            return row

    def set_starting_account(self, cash: float, equity: float) -> None:
        """Record the broker account at the session's first start (never overwritten)."""
        with self.session() as s:
            row = s.scalars(select(RunRow)).one()
            if row.starting_equity is None:
                row.starting_cash, row.starting_equity = cash, equity

    def heartbeat(self, now: datetime, last_bar: datetime | None = None) -> None:
        with self.session() as s:
            row = s.scalars(select(RunRow)).one()
            row.heartbeat_at = now
            if last_bar is not None:
                row.last_bar = last_bar

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
        filled_qty: float | None = None, avg_price: float | None = None,
    ) -> OrderRow:  # fmt: skip
        """Set what the broker says of an order; a final order never changes again."""
        if status not in ORDER_STATES:
            raise ValueError(f"status: got {status!r}, expected one of {', '.join(ORDER_STATES)}")
        with self.session() as s:
            row = s.get(OrderRow, cid)
            if row is None:
                raise StateError(f"{self.path}: no intent with client order id {cid!r}")
            if row.final:
                return row
            row.status, row.updated_at = status, now
            row.final = status in FINAL_STATES
            if broker_order_id is not None:
                row.broker_order_id = broker_order_id
            if filled_qty is not None:
                row.filled_qty = filled_qty
            if avg_price is not None:
                row.avg_price = avg_price
            return row

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

    def record_book(
        self, bar: datetime, cash: float, equity: float, positions: dict[str, float]
    ) -> None:
        """The book after ``bar``: positions (quantity per symbol) and equity (idempotent)."""
        with self.session() as s:
            for symbol, qty in positions.items():
                row = s.get(PositionRow, symbol)
                if row is None:
                    s.add(PositionRow(symbol=symbol, qty=qty, bar=bar))
                else:
                    row.qty, row.bar = qty, bar
            if s.get(EquityRow, bar) is None:
                s.add(EquityRow(bar=bar, cash=cash, equity=equity))

    def positions(self) -> dict[str, float]:
        with self.session() as s:
            return {r.symbol: r.qty for r in s.scalars(select(PositionRow))}
