"""device logs: what devices say, by day, searchable

PostgreSQL: `device_logs` partitioned by range of `received_at`, one partition per UTC
day (the writer creates them; retention drops them whole), a pg_trgm GIN index on the
message for text search. SQLite: one table and an FTS5 trigram index kept by triggers.
`device_log_drops` counts the lines each device sent that were not kept.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """CREATE TABLE device_logs (
        id bigserial NOT NULL,
        config_id integer NOT NULL
            REFERENCES device_configs (id) ON DELETE CASCADE,
        received_at timestamptz NOT NULL,
        device_time timestamptz,
        uptime_ms bigint,
        level smallint NOT NULL,
        tag varchar(64),
        message text NOT NULL,
        firmware_version varchar(64),
        verified boolean NOT NULL,
        PRIMARY KEY (id, received_at)
    ) PARTITION BY RANGE (received_at)""",
    "CREATE INDEX ix_device_logs_config_id_id ON device_logs (config_id, id)",
    "CREATE INDEX ix_device_logs_message_trgm ON device_logs USING gin (message gin_trgm_ops)",
    # Errors are few: which devices logged one lately reads this small index alone.
    "CREATE INDEX ix_device_logs_errors ON device_logs (received_at, config_id) WHERE level <= 1",
]

SQLITE = [
    """CREATE TABLE device_logs (
        id INTEGER NOT NULL PRIMARY KEY,
        config_id INTEGER NOT NULL REFERENCES device_configs (id) ON DELETE CASCADE,
        received_at DATETIME NOT NULL,
        device_time DATETIME,
        uptime_ms BIGINT,
        level SMALLINT NOT NULL,
        tag VARCHAR(64),
        message TEXT NOT NULL,
        firmware_version VARCHAR(64),
        verified BOOLEAN NOT NULL
    )""",
    "CREATE INDEX ix_device_logs_config_id_id ON device_logs (config_id, id)",
    "CREATE INDEX ix_device_logs_received_at ON device_logs (received_at)",
    "CREATE INDEX ix_device_logs_errors ON device_logs (received_at, config_id) WHERE level <= 1",
    """CREATE VIRTUAL TABLE device_logs_fts USING fts5(
        message, content='device_logs', content_rowid='id', tokenize='trigram'
    )""",
    """CREATE TRIGGER device_logs_fts_insert AFTER INSERT ON device_logs BEGIN
        INSERT INTO device_logs_fts (rowid, message) VALUES (new.id, new.message);
    END""",
    """CREATE TRIGGER device_logs_fts_delete AFTER DELETE ON device_logs BEGIN
        INSERT INTO device_logs_fts (device_logs_fts, rowid, message)
        VALUES ('delete', old.id, old.message);
    END""",
]


def upgrade() -> None:
    statements = POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE
    for statement in statements:
        op.execute(statement)
    op.create_table(
        "device_log_drops",
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("last_dropped_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["device_configs.id"],
            name=op.f("fk_device_log_drops_config_id_device_configs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_device_log_drops")),
    )


def downgrade() -> None:
    op.drop_table("device_log_drops")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS device_logs_fts")
    op.execute("DROP TABLE IF EXISTS device_logs")  # PostgreSQL: its partitions with it
