"""device changes: what invalidates the workers' in-memory device documents

PostgreSQL: triggers notify the channel `iotsupport_devices` with the MAC, in the
changing transaction (delivered at commit). SQLite: triggers append to
`device_changes`, which workers read as a change counter.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# What a device fetch reads; other columns (check-ins, last use, schema state) change
# often and invalidate nothing.
CONFIG_COLUMNS = "content, etag, version, mac_address"
CREDENTIAL_COLUMNS = "token_hash, previous_hash, previous_expires_at, broker_hash"
KEEP_CHANGES = 10_000

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION iotsupport_device_changed() RETURNS trigger AS $$
DECLARE
    changed text;
BEGIN
    IF TG_TABLE_NAME = 'device_configs' THEN
        IF TG_OP = 'DELETE' THEN
            changed := OLD.mac_address;
        ELSE
            changed := NEW.mac_address;
        END IF;
    ELSE
        SELECT mac_address INTO changed FROM device_configs
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.config_id ELSE NEW.config_id END;
    END IF;
    IF changed IS NOT NULL THEN
        PERFORM pg_notify('iotsupport_devices', changed);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def _sqlite_triggers() -> list[str]:
    journal = "INSERT INTO device_changes (mac_address)"
    by_config = "SELECT mac_address FROM device_configs WHERE id = {row}.config_id"
    return [
        f"CREATE TRIGGER device_configs_inserted AFTER INSERT ON device_configs "
        f"BEGIN {journal} VALUES (NEW.mac_address); END",
        f"CREATE TRIGGER device_configs_updated AFTER UPDATE OF {CONFIG_COLUMNS} "
        f"ON device_configs BEGIN {journal} VALUES (NEW.mac_address); END",
        f"CREATE TRIGGER device_configs_deleted AFTER DELETE ON device_configs "
        f"BEGIN {journal} VALUES (OLD.mac_address); END",
        f"CREATE TRIGGER device_credentials_inserted AFTER INSERT ON device_credentials "
        f"BEGIN {journal} {by_config.format(row='NEW')}; END",
        f"CREATE TRIGGER device_credentials_updated AFTER UPDATE OF {CREDENTIAL_COLUMNS} "
        f"ON device_credentials BEGIN {journal} {by_config.format(row='NEW')}; END",
        f"CREATE TRIGGER device_credentials_deleted AFTER DELETE ON device_credentials "
        f"BEGIN {journal} {by_config.format(row='OLD')}; END",
        # Every 1,000th change drops what is older than the newest KEEP_CHANGES.
        f"CREATE TRIGGER device_changes_pruned AFTER INSERT ON device_changes "
        f"WHEN NEW.seq % 1000 = 0 "
        f"BEGIN DELETE FROM device_changes WHERE seq <= NEW.seq - {KEEP_CHANGES}; END",
    ]


SQLITE_TRIGGER_NAMES = [
    "device_configs_inserted",
    "device_configs_updated",
    "device_configs_deleted",
    "device_credentials_inserted",
    "device_credentials_updated",
    "device_credentials_deleted",
    "device_changes_pruned",
]


def upgrade() -> None:
    op.create_table(
        "device_changes",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("mac_address", sa.String(length=17), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_device_changes")),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in _sqlite_triggers():
            op.execute(statement)
        return
    op.execute(POSTGRES_FUNCTION)
    op.execute(
        "CREATE TRIGGER device_configs_changed AFTER INSERT OR DELETE OR UPDATE OF "
        f"{CONFIG_COLUMNS} ON device_configs "
        "FOR EACH ROW EXECUTE FUNCTION iotsupport_device_changed()"
    )
    op.execute(
        "CREATE TRIGGER device_credentials_changed AFTER INSERT OR DELETE OR UPDATE OF "
        f"{CREDENTIAL_COLUMNS} ON device_credentials "
        "FOR EACH ROW EXECUTE FUNCTION iotsupport_device_changed()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS device_configs_changed ON device_configs")
        op.execute("DROP TRIGGER IF EXISTS device_credentials_changed ON device_credentials")
        op.execute("DROP FUNCTION IF EXISTS iotsupport_device_changed()")
    op.drop_table("device_changes")
