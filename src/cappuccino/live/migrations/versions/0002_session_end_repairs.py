"""The session's end, starting positions and reconciliation; order reasons; skipped orders
per decision; the close prices of each equity row; the events table (repairs,
reconciliation outcomes, refusals).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run", sa.Column("ended_at", sa.DateTime(), nullable=True))
    op.add_column("run", sa.Column("end_reason", sa.String(256), nullable=True))
    op.add_column("run", sa.Column("starting_positions", sa.JSON(), nullable=True))
    op.add_column("run", sa.Column("reconcile", sa.JSON(), nullable=True))
    op.add_column("run", sa.Column("rules", sa.JSON(), nullable=True))
    op.add_column("orders", sa.Column("reason", sa.String(512), nullable=False, server_default=""))
    op.add_column("decisions", sa.Column("skipped", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("equity", sa.Column("prices", sa.JSON(), nullable=True))
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(2048), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("events")
    with op.batch_alter_table("equity") as b:
        b.drop_column("prices")
    with op.batch_alter_table("decisions") as b:
        b.drop_column("skipped")
    with op.batch_alter_table("orders") as b:
        b.drop_column("reason")
    with op.batch_alter_table("run") as b:
        for c in ("rules", "reconcile", "starting_positions", "end_reason", "ended_at"):
            b.drop_column(c)
