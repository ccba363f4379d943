"""Alembic environment of the paper-trading state: run on the connection the caller passes
(``config.attributes["connection"]``), never from a URL in a file."""

from __future__ import annotations

from alembic import context

from cappuccino.live.state import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
