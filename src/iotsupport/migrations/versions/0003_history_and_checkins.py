"""config history, deletions, device check-ins, updated_by

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_configs") as batch:
        batch.add_column(
            sa.Column(
                "updated_by", sa.String(length=255), nullable=False, server_default="anonymous"
            )
        )
    op.create_table(
        "config_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("mac_address", sa.String(length=17), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("device_name", sa.Text(), nullable=True),
        sa.Column("device_entity_id", sa.Text(), nullable=True),
        sa.Column("enable_ota", sa.Boolean(), nullable=True),
        sa.Column("saved_at", UTCDateTime(), nullable=False),
        sa.Column("saved_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_history")),
        sa.UniqueConstraint("config_id", "version", name=op.f("uq_config_history_config_id")),
    )
    op.create_index(
        op.f("ix_config_history_mac_address"), "config_history", ["mac_address"], unique=False
    )
    op.create_table(
        "config_deletions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("mac_address", sa.String(length=17), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config_created_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_deletions")),
    )
    op.create_index(
        op.f("ix_config_deletions_config_id"), "config_deletions", ["config_id"], unique=False
    )
    op.create_index(
        op.f("ix_config_deletions_mac_address"), "config_deletions", ["mac_address"], unique=False
    )
    op.create_table(
        "device_checkins",
        sa.Column("config_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("fetched_version", sa.Integer(), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("firmware_version", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_device_checkins")),
    )
    # Each existing config starts its history at the version it has now.
    op.execute(
        "INSERT INTO config_history (config_id, mac_address, version, event, content, "
        "device_name, device_entity_id, enable_ota, saved_at, saved_by) "
        "SELECT id, mac_address, version, "
        "CASE WHEN version = 1 THEN 'created' ELSE 'updated' END, content, device_name, "
        "device_entity_id, enable_ota, updated_at, updated_by FROM device_configs"
    )


def downgrade() -> None:
    op.drop_table("device_checkins")
    op.drop_index(op.f("ix_config_deletions_mac_address"), table_name="config_deletions")
    op.drop_index(op.f("ix_config_deletions_config_id"), table_name="config_deletions")
    op.drop_table("config_deletions")
    op.drop_index(op.f("ix_config_history_mac_address"), table_name="config_history")
    op.drop_table("config_history")
    with op.batch_alter_table("device_configs") as batch:
        batch.drop_column("updated_by")
