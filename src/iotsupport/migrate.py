"""Schema changes, only through the Alembic migrations shipped in this package.

Alembic is imported inside the functions: it costs each server worker ~10 MB of
memory, and only the CLI ever migrates.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from sqlalchemy import Engine

from iotsupport.db.tables import Base

if t.TYPE_CHECKING:
    from alembic.config import Config


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "iotsupport:migrations")
    return config


def upgrade(engine: Engine, *, recreate: bool = False) -> None:
    """Apply every pending migration; with recreate, drop everything first."""
    from alembic import command

    config = _alembic_config()
    with engine.begin() as connection:
        if recreate:
            # The log tables are outside the models (migration 0014) and refer to configs.
            connection.exec_driver_sql("DROP TABLE IF EXISTS device_logs_fts")
            connection.exec_driver_sql("DROP TABLE IF EXISTS device_logs")
            Base.metadata.drop_all(connection)
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str | None
    pending: list[str]


def status(engine: Engine) -> SchemaStatus:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = script.get_current_head()
    pending = [
        f"{rev.revision} {rev.doc}"
        for rev in reversed(list(script.iterate_revisions(head, current)))
    ]
    return SchemaStatus(current=current, head=head, pending=pending)
