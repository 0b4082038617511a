"""verified device reports: what a credential proved, kept apart from what anyone sent

device_checkins gains the latest report that a device credential proved (its time,
firmware version and SHA-256); rollouts gain `unverified_reports` (off: a rollout judges
devices only by proved reports). Existing check-ins made with a credential are copied
over, so running rollouts keep what they saw.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_checkins") as batch:
        batch.add_column(sa.Column("verified_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("verified_firmware_version", sa.String(length=64), nullable=True)
        )
        batch.add_column(sa.Column("verified_firmware_sha256", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE device_checkins SET verified_at = fetched_at,"
        " verified_firmware_version = firmware_version,"
        " verified_firmware_sha256 = firmware_sha256"
        " WHERE with_credential"
    )
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(
            sa.Column("unverified_reports", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("unverified_reports")
    with op.batch_alter_table("device_checkins") as batch:
        batch.drop_column("verified_firmware_sha256")
        batch.drop_column("verified_firmware_version")
        batch.drop_column("verified_at")
