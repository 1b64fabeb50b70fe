"""Pre-rendered hot reads: the sweep views table and the front's stored statistics.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sweeps stored before this revision have no view row: the API renders theirs on read.
    op.create_table(
        "bai_sweep_views",
        sa.Column("sweep_id", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("pareto", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["bai_sweeps.id"],
            name=op.f("fk_bai_sweep_views_sweep_id_bai_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sweep_id", name=op.f("pk_bai_sweep_views")),
    )
    with op.batch_alter_table("bai_pareto_fronts") as batch:
        batch.add_column(sa.Column("statistics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bai_pareto_fronts") as batch:
        batch.drop_column("statistics")
    op.drop_table("bai_sweep_views")
