"""outbox: the announcements each commit owes, published by one relay after commit

PostgreSQL: a statement trigger notifies `iotsupport_outbox` when rows arrive, which
wakes the relay (whichever process holds the advisory lock) at commit.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION iotsupport_outbox_written() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('iotsupport_outbox', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute(POSTGRES_FUNCTION)
    op.execute(
        "CREATE TRIGGER outbox_written AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION iotsupport_outbox_written()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS outbox_written ON outbox")
        op.execute("DROP FUNCTION IF EXISTS iotsupport_outbox_written()")
    op.drop_table("outbox")
