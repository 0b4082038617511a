"""core dumps and crash groups; a release's app ELF

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("elf_file_sha256", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            "fk_releases_elf_file", "release_files", ["elf_file_sha256"], ["sha256"]
        )
    op.create_table(
        "crash_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("signature", sa.String(length=64), nullable=False, unique=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("exception", sa.String(length=64), nullable=True),
        sa.Column("frames", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("regression", sa.Boolean(), nullable=False),
        sa.Column("resolved_after", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "coredumps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "config_id",
            sa.Integer(),
            sa.ForeignKey("device_configs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=400), nullable=True),
        sa.Column("decoded", sa.Text(), nullable=True),
        sa.Column("decoded_at", UTCDateTime(), nullable=True),
        sa.Column("chip", sa.String(length=16), nullable=True),
        sa.Column("app_elf_sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "release_id",
            sa.Integer(),
            sa.ForeignKey("releases.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("symbolized", sa.Boolean(), nullable=False),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("crash_groups.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.UniqueConstraint("config_id", "sha256"),
    )
    op.create_index("ix_coredumps_state", "coredumps", ["state"])
    op.create_index("ix_coredumps_config_id", "coredumps", ["config_id"])
    op.create_index("ix_coredumps_release_id", "coredumps", ["release_id"])
    op.create_index("ix_coredumps_group_id", "coredumps", ["group_id"])
    op.create_table(
        "crash_occurrences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("crash_groups.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "config_id",
            sa.Integer(),
            sa.ForeignKey("device_configs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "release_id",
            sa.Integer(),
            sa.ForeignKey("releases.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "coredump_id",
            sa.Integer(),
            sa.ForeignKey("coredumps.id", ondelete="SET NULL"),
            nullable=True,
            unique=True,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_crash_occurrences_group_id", "crash_occurrences", ["group_id"])
    op.create_index("ix_crash_occurrences_config_id", "crash_occurrences", ["config_id"])


def downgrade() -> None:
    op.drop_table("crash_occurrences")
    op.drop_table("coredumps")
    op.drop_table("crash_groups")
    with op.batch_alter_table("releases") as batch:
        batch.drop_constraint("fk_releases_elf_file", type_="foreignkey")
        batch.drop_column("elf_file_sha256")
