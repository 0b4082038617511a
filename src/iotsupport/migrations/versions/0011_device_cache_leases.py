"""device cache leases: the workers that may answer device fetches from memory

PostgreSQL workers renew a lease here; the settle before an announcement waits for
every worker whose lease has not run out (device_cache/postgres.py). Unused on SQLite.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_cache_workers",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("device_cache_workers")
