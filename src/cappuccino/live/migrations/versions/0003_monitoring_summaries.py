"""Summaries the database keeps for monitors, so that a status read costs a few row lookups
whatever the session's length (``cappuccino.monitoring.paper``):

- ``order_counts``: orders by status, kept by triggers on ``orders`` (insert, status change);
- ``summary`` (one row): bars recorded, fills, fees, skipped orders and the deepest
  drawdown, kept by triggers on ``equity``, ``fills`` and ``decisions``;
- on each ``equity`` row: ``peak`` (running peak equity), ``bh`` and ``ew``: the buy-and-hold
  (equal weights at the first row's close, then held) and equal-weight (rebalanced every
  bar) indexes, 1.0 at the first row, from the rows' close prices (NULL without prices);
- partial indexes on open orders, refused (rejected or expired) orders and decisions with
  skipped orders.

The triggers run in the writer's transaction: a summary is never ahead of or behind its
rows. Rows are assumed to arrive in bar order (the runner's); an existing session's rows
are backfilled here.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PREV = "(SELECT p.{col} FROM equity p WHERE p.bar < NEW.bar ORDER BY p.bar DESC LIMIT 1)"
_FIRST_PRICES = "(SELECT f.prices FROM equity f ORDER BY f.bar LIMIT 1)"

TRIGGERS = {
    "orders_count_insert": """
CREATE TRIGGER orders_count_insert AFTER INSERT ON orders BEGIN
  INSERT INTO order_counts (status, n) VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END""",
    "orders_count_update": """
CREATE TRIGGER orders_count_update AFTER UPDATE OF status ON orders
WHEN OLD.status IS NOT NEW.status BEGIN
  UPDATE order_counts SET n = n - 1 WHERE status = OLD.status;
  INSERT INTO order_counts (status, n) VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END""",
    "fills_total": """
CREATE TRIGGER fills_total AFTER INSERT ON fills BEGIN
  UPDATE summary SET fills = fills + 1, fees = fees + NEW.fee WHERE id = 1;
END""",
    "decisions_skipped": """
CREATE TRIGGER decisions_skipped AFTER INSERT ON decisions WHEN NEW.skipped != '[]' BEGIN
  UPDATE summary SET skipped = skipped + json_array_length(NEW.skipped) WHERE id = 1;
END""",
    "equity_analytics": f"""
CREATE TRIGGER equity_analytics AFTER INSERT ON equity BEGIN
  UPDATE equity SET
    peak = MAX(NEW.equity, COALESCE({_PREV.format(col="peak")}, NEW.equity)),
    ew = CASE
      WHEN NOT EXISTS (SELECT 1 FROM equity p WHERE p.bar < NEW.bar) THEN
        CASE WHEN NEW.prices IS NULL THEN NULL ELSE 1.0 END
      ELSE {_PREV.format(col="ew")} * (
        SELECT AVG(n.value / o.value) FROM json_each(NEW.prices) n
        JOIN json_each({_PREV.format(col="prices")}) o ON n.key = o.key)
    END,
    bh = (SELECT AVG(n.value / f.value) FROM json_each(NEW.prices) n
          JOIN json_each({_FIRST_PRICES}) f ON n.key = f.key)
  WHERE bar = NEW.bar;
  UPDATE summary SET bars = bars + 1,
    max_drawdown = MIN(max_drawdown, (SELECT e.equity / e.peak - 1.0 FROM equity e
                                      WHERE e.bar = NEW.bar))
  WHERE id = 1;
END""",
}
INDEXES = {
    "ix_orders_open": "CREATE INDEX ix_orders_open ON orders (client_order_id) WHERE final = 0",
    "ix_orders_refused": "CREATE INDEX ix_orders_refused ON orders (updated_at) "
    "WHERE status IN ('REJECTED', 'EXPIRED')",
    "ix_decisions_skipped": "CREATE INDEX ix_decisions_skipped ON decisions (bar) "
    "WHERE skipped != '[]'",
}


def _backfill(bind: sa.engine.Connection) -> None:
    rows = bind.execute(sa.text("SELECT bar, equity, prices FROM equity ORDER BY bar")).all()
    updates: list[dict[str, object]] = []
    peak, mdd, ew, prev = -float("inf"), 0.0, None, None
    first = json.loads(rows[0][2]) if rows and rows[0][2] else None
    for k, (bar, equity, prices) in enumerate(rows):
        px = json.loads(prices) if prices else None
        peak = max(peak, equity)
        mdd = min(mdd, equity / peak - 1.0)
        if k == 0:
            ew = 1.0 if px else None
        else:
            r: float | None = _mean_ratio(px, prev) if px and prev else None
            ew = ew * r if ew is not None and r is not None else None
        bh = _mean_ratio(px, first) if px and first else None
        prev = px
        updates.append({"bar": bar, "peak": peak, "bh": bh, "ew": ew})
    if updates:
        bind.execute(sa.text("UPDATE equity SET peak = :peak, bh = :bh, ew = :ew WHERE bar = :bar"),
                     updates)  # fmt: skip
    fills, fees = bind.execute(sa.text("SELECT COUNT(*), COALESCE(SUM(fee), 0) FROM fills")).one()
    skipped = bind.execute(sa.text(
        "SELECT COALESCE(SUM(json_array_length(skipped)), 0) FROM decisions")).scalar()  # fmt: skip
    bind.execute(sa.text("INSERT INTO summary (id, bars, fills, fees, skipped, max_drawdown) "
                         "VALUES (1, :b, :f, :fees, :s, :m)"),
                 {"b": len(rows), "f": fills, "fees": fees, "s": skipped, "m": mdd})  # fmt: skip
    bind.execute(sa.text("INSERT INTO order_counts (status, n) SELECT status, COUNT(*) FROM orders "
                         "GROUP BY status"))  # fmt: skip


def _mean_ratio(a: dict[str, float], b: dict[str, float]) -> float | None:
    keys = [k for k in a if k in b]
    return sum(a[k] / b[k] for k in keys) / len(keys) if keys else None


def upgrade() -> None:
    for col in ("peak", "bh", "ew"):
        op.add_column("equity", sa.Column(col, sa.Float(), nullable=True))
    op.create_table(
        "order_counts",
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
    )
    op.create_table(
        "summary",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("bars", sa.Integer(), nullable=False),
        sa.Column("fills", sa.Integer(), nullable=False),
        sa.Column("fees", sa.Float(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("max_drawdown", sa.Float(), nullable=False),
        sa.CheckConstraint("id = 1", name="summary_one_row"),
    )
    _backfill(op.get_bind())
    for ddl in (*TRIGGERS.values(), *INDEXES.values()):
        op.execute(ddl)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.drop_table("summary")
    op.drop_table("order_counts")
    with op.batch_alter_table("equity") as b:
        for col in ("ew", "bh", "peak"):
            b.drop_column(col)
