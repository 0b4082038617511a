"""releases, rollouts, firmware targets; a model's chip; the reported firmware SHA-256

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("device_models", sa.Column("chip", sa.String(length=16), nullable=True))
    op.add_column(
        "device_checkins", sa.Column("firmware_sha256", sa.String(length=64), nullable=True)
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chip", sa.String(length=16), nullable=False),
        sa.Column("project_name", sa.String(length=32), nullable=False),
        sa.Column("idf_version", sa.String(length=32), nullable=False),
        sa.Column("build_date", sa.String(length=16), nullable=False),
        sa.Column("build_time", sa.String(length=16), nullable=False),
        sa.Column("elf_sha256", sa.String(length=64), nullable=False),
        sa.Column("secure_version", sa.BigInteger(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("min_chip_revision", sa.Integer(), nullable=False),
        sa.Column("max_chip_revision", sa.Integer(), nullable=False),
        sa.Column("flash_size", sa.String(length=8), nullable=True),
        sa.Column("spi_mode", sa.String(length=16), nullable=True),
        sa.Column("entry_point", sa.BigInteger(), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        sa.Column("signed", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["device_models.id"], name=op.f("fk_releases_model_id_device_models")
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["release_files.sha256"], name=op.f("fk_releases_sha256_release_files")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_releases_model_id")),
    )
    op.create_index(op.f("ix_releases_sha256"), "releases", ["sha256"], unique=False)
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("stages", sa.Text(), nullable=False),
        sa.Column("error_threshold", sa.String(length=8), nullable=True),
        sa.Column("approve_each_stage", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("paused_reason", sa.String(length=24), nullable=True),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("acknowledged_stage", sa.Integer(), nullable=False),
        sa.Column("active_model_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"], ["device_models.id"], name=op.f("fk_rollouts_model_id_device_models")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_rollouts_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
        sa.UniqueConstraint("active_model_id", name=op.f("uq_rollouts_active_model_id")),
    )
    op.create_index(op.f("ix_rollouts_model_id"), "rollouts", ["model_id"], unique=False)
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("previous_release_id", sa.Integer(), nullable=True),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("download_started_at", UTCDateTime(), nullable=True),
        sa.Column("changed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["device_configs.id"],
            name=op.f("fk_rollout_devices_config_id_device_configs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["previous_release_id"],
            ["releases.id"],
            name=op.f("fk_rollout_devices_previous_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_devices_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "config_id", name=op.f("pk_rollout_devices")),
    )
    op.create_index(
        op.f("ix_rollout_devices_config_id"), "rollout_devices", ["config_id"], unique=False
    )
    op.create_table(
        "firmware_targets",
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=True),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["device_configs.id"],
            name=op.f("fk_firmware_targets_config_id_device_configs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_firmware_targets_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_firmware_targets_rollout_id_rollouts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_firmware_targets")),
    )
    op.create_index(
        op.f("ix_firmware_targets_release_id"), "firmware_targets", ["release_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("firmware_targets")
    op.drop_table("rollout_devices")
    op.drop_table("rollouts")
    op.drop_table("releases")
    op.drop_column("device_checkins", "firmware_sha256")
    op.drop_column("device_models", "chip")
