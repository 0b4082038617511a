"""change sets that move configs to a model: the model set, and each config's before

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("change_sets") as batch:
        batch.add_column(
            sa.Column("sets_model", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("model_code", sa.String(64), nullable=True))
    with op.batch_alter_table("change_set_items") as batch:
        batch.add_column(sa.Column("before_model_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("change_set_items") as batch:
        batch.drop_column("before_model_id")
    with op.batch_alter_table("change_sets") as batch:
        batch.drop_column("model_code")
        batch.drop_column("sets_model")
