"""The first schema: run, decisions, intents, orders, fills, positions, equity.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("broker", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(512), nullable=False),
        sa.Column("symbols", sa.JSON(), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("starting_cash", sa.Float(), nullable=True),
        sa.Column("starting_equity", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("last_bar", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "decisions",
        sa.Column("bar", sa.DateTime(), primary_key=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("target_units", sa.JSON(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("note", sa.String(512), nullable=False),
    )
    op.create_table(
        "intents",
        sa.Column("client_order_id", sa.String(36), primary_key=True),
        sa.Column("bar", sa.DateTime(), nullable=False, index=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("leg", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column(
            "client_order_id",
            sa.String(36),
            sa.ForeignKey("intents.client_order_id"),
            primary_key=True,
        ),
        sa.Column("broker_order_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_qty", sa.Float(), nullable=False),
        sa.Column("avg_price", sa.Float(), nullable=True),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "fills",
        sa.Column("trade_id", sa.String(128), primary_key=True),
        sa.Column(
            "client_order_id",
            sa.String(36),
            sa.ForeignKey("intents.client_order_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "positions",
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("bar", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "equity",
        sa.Column("bar", sa.DateTime(), primary_key=True),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    for table in ("equity", "positions", "fills", "orders", "intents", "decisions", "run"):
        op.drop_table(table)
