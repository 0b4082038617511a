"""device health: samples, hourly aggregates, resets, presence; rollouts that watch health

Revision ID: 0017
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0017"
down_revision = "0012"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _config_id(primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "config_id",
        sa.Integer(),
        sa.ForeignKey("device_configs.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "health_samples",
        sa.Column("id", _ID, primary_key=True),
        _config_id(),
        sa.Column("reported_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("reset_reason", sa.String(16)),
        sa.Column("uptime_s", sa.BigInteger()),
        sa.Column("free_heap", sa.BigInteger()),
        sa.Column("min_free_heap", sa.BigInteger()),
        sa.Column("wifi_rssi", sa.Integer()),
        sa.Column("metrics", sa.Text()),
    )
    op.create_index("ix_health_samples_config_at", "health_samples", ["config_id", "reported_at"])
    op.create_index("ix_health_samples_reported_at", "health_samples", ["reported_at"])
    op.create_table(
        "health_hours",
        _config_id(primary_key=True),
        sa.Column("hour", UTCDateTime(), primary_key=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("max_uptime_s", sa.BigInteger()),
        sa.Column("min_free_heap", sa.BigInteger()),
        sa.Column("avg_free_heap", sa.Float()),
        sa.Column("min_wifi_rssi", sa.Integer()),
        sa.Column("avg_wifi_rssi", sa.Float()),
        sa.Column("metrics", sa.Text()),
    )
    op.create_index("ix_health_hours_hour", "health_hours", ["hour"])
    op.create_table(
        "device_resets",
        sa.Column("id", _ID, primary_key=True),
        _config_id(),
        sa.Column("boot_at", UTCDateTime(), nullable=False),
        sa.Column("reported_at", UTCDateTime(), nullable=False),
        sa.Column("reset_reason", sa.String(16), nullable=False),
        sa.Column("unexpected", sa.Boolean(), nullable=False),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("verified", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_device_resets_config_boot", "device_resets", ["config_id", "boot_at"])
    op.create_index("ix_device_resets_boot_at", "device_resets", ["boot_at"])
    op.create_index("ix_device_resets_firmware_version", "device_resets", ["firmware_version"])
    op.create_table(
        "device_presence",
        _config_id(primary_key=True),
        sa.Column("last_report_at", UTCDateTime()),
        sa.Column("connected", sa.Boolean()),
        sa.Column("status_at", UTCDateTime()),
        sa.Column("boot_at", UTCDateTime()),
        sa.Column("reset_reason", sa.String(16)),
        sa.Column("uptime_s", sa.BigInteger()),
    )
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(
            sa.Column("health_window_seconds", sa.Integer(), nullable=False, server_default="3600")
        )
        batch.add_column(sa.Column("max_crash_rate", sa.String(8), nullable=True))
        batch.add_column(
            sa.Column(
                "compare_to_previous", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(
            sa.Column("crash_free_margin", sa.Float(), nullable=False, server_default="5.0")
        )
        batch.add_column(sa.Column("paused_detail", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        for name in (
            "paused_detail",
            "crash_free_margin",
            "compare_to_previous",
            "max_crash_rate",
            "health_window_seconds",
        ):
            batch.drop_column(name)
    op.drop_table("device_presence")
    op.drop_table("device_resets")
    op.drop_table("health_hours")
    op.drop_table("health_samples")
