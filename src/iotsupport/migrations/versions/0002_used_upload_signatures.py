"""used upload signatures (replay protection for asset uploads)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_upload_signatures",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_used_upload_signatures")),
    )
    op.create_index(
        op.f("ix_used_upload_signatures_signed_at"),
        "used_upload_signatures",
        ["signed_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_used_upload_signatures_signed_at"), table_name="used_upload_signatures")
    op.drop_table("used_upload_signatures")
