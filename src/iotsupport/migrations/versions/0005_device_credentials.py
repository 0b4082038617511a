"""device credentials, broker account changes, check-ins note the credential

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_credentials",
        sa.Column("config_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_expires_at", UTCDateTime(), nullable=True),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("issued_by", sa.String(length=255), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_from", sa.String(length=64), nullable=True),
        sa.Column("broker_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_device_credentials")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_device_credentials_token_hash")),
        sa.UniqueConstraint("previous_hash", name=op.f("uq_device_credentials_previous_hash")),
    )
    op.create_table(
        "broker_account_changes",
        sa.Column("username", sa.String(length=17), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("sealed_password", sa.Text(), nullable=True),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_broker_account_changes")),
    )
    with op.batch_alter_table("device_checkins") as batch:
        batch.add_column(sa.Column("with_credential", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_checkins") as batch:
        batch.drop_column("with_credential")
    op.drop_table("broker_account_changes")
    op.drop_table("device_credentials")
