"""Alembic environment: runs on the connection that iotsupport.migrate hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from iotsupport.db.tables import Base
from iotsupport.db.tables import outside_models

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=outside_models,
)
with context.begin_transaction():
    context.run_migrations()
