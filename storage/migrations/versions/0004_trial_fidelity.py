"""Trials record their successive-halving rung (rung, probe steps and seeds, candidate).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bai_trials") as batch:
        batch.add_column(sa.Column("fidelity", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bai_trials") as batch:
        batch.drop_column("fidelity")
