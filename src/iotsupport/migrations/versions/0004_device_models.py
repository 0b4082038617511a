"""device models, configs in a model, change sets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotsupport.db.base import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_models")),
        sa.UniqueConstraint("code", name=op.f("uq_device_models_code")),
    )
    op.create_table(
        "change_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patch", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("undone_at", UTCDateTime(), nullable=True),
        sa.Column("undone_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_sets")),
    )
    op.create_table(
        "change_set_items",
        sa.Column("change_set_id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("mac_address", sa.String(length=17), nullable=False),
        sa.Column("before_version", sa.Integer(), nullable=False),
        sa.Column("after_version", sa.Integer(), nullable=False),
        sa.Column("before_content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_set_id"],
            ["change_sets.id"],
            name=op.f("fk_change_set_items_change_set_id_change_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("change_set_id", "config_id", name=op.f("pk_change_set_items")),
    )
    if op.get_bind().dialect.name == "sqlite":
        # A plain ADD COLUMN: a batch rebuild of the table would drop its AUTOINCREMENT.
        op.execute(
            "ALTER TABLE device_configs ADD COLUMN model_id INTEGER REFERENCES device_models (id)"
        )
    else:
        op.add_column("device_configs", sa.Column("model_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_device_configs_model_id_device_models"),
            "device_configs",
            "device_models",
            ["model_id"],
            ["id"],
        )
    op.add_column("device_configs", sa.Column("schema_valid", sa.Boolean(), nullable=True))
    op.create_index(
        op.f("ix_device_configs_model_id"), "device_configs", ["model_id"], unique=False
    )
    op.add_column("config_history", sa.Column("model_id", sa.Integer(), nullable=True))
    op.add_column("config_history", sa.Column("change_set_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("config_history") as batch:
        batch.drop_column("change_set_id")
        batch.drop_column("model_id")
    op.drop_index(op.f("ix_device_configs_model_id"), table_name="device_configs")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(
            op.f("fk_device_configs_model_id_device_models"), "device_configs", type_="foreignkey"
        )
    # SQLite (3.35+) drops a column in place; one with an inline REFERENCES clause too.
    op.drop_column("device_configs", "schema_valid")
    op.drop_column("device_configs", "model_id")
    op.drop_table("change_set_items")
    op.drop_table("change_sets")
    op.drop_table("device_models")
