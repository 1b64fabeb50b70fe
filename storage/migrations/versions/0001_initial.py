"""Initial schema: sweeps, trials, trial steps and Pareto fronts.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bai_sweeps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                name="sweepstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("study_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bai_sweeps")),
        sa.UniqueConstraint("study_name", name=op.f("uq_bai_sweeps_study_name")),
    )
    op.create_index("ix_bai_sweeps_created_at", "bai_sweeps", ["created_at"], unique=False)
    op.create_index(
        "ix_bai_sweeps_name_status_finished_at",
        "bai_sweeps",
        ["name", "status", "finished_at"],
        unique=False,
    )
    op.create_index(
        "ix_bai_sweeps_status_created_at", "bai_sweeps", ["status", "created_at"], unique=False
    )

    op.create_table(
        "bai_pareto_fronts",
        sa.Column("sweep_id", sa.String(length=32), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=True),
        sa.Column("reference_point", sa.JSON(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["bai_sweeps.id"],
            name=op.f("fk_bai_pareto_fronts_sweep_id_bai_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sweep_id", name=op.f("pk_bai_pareto_fronts")),
    )
    op.create_table(
        "bai_trials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sweep_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "running",
                "complete",
                "failed",
                "pruned",
                name="trialstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "seed_kind",
            sa.Enum("paper", "baseline", "explicit", name="seedkind", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("objectives", sa.JSON(), nullable=True),
        sa.Column("stability", sa.JSON(), nullable=True),
        sa.Column("benchmarks", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("actor_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["bai_sweeps.id"],
            name=op.f("fk_bai_trials_sweep_id_bai_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bai_trials")),
        sa.UniqueConstraint("sweep_id", "number", name=op.f("uq_bai_trials_sweep_id_number")),
    )
    op.create_index(
        "ix_bai_trials_sweep_id_state", "bai_trials", ["sweep_id", "state"], unique=False
    )

    op.create_table(
        "bai_pareto_members",
        sa.Column("sweep_id", sa.String(length=32), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["bai_pareto_fronts.sweep_id"],
            name=op.f("fk_bai_pareto_members_sweep_id_bai_pareto_fronts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["bai_trials.id"],
            name=op.f("fk_bai_pareto_members_trial_id_bai_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sweep_id", "trial_id", name=op.f("pk_bai_pareto_members")),
    )
    op.create_table(
        "bai_trial_steps",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("length_mean", sa.Float(), nullable=True),
        sa.Column("length_p10", sa.Float(), nullable=True),
        sa.Column("length_p50", sa.Float(), nullable=True),
        sa.Column("length_p90", sa.Float(), nullable=True),
        sa.Column("truncated_fraction", sa.Float(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("kl", sa.Float(), nullable=True),
        sa.Column("entropy", sa.Float(), nullable=True),
        sa.Column("eos_rate", sa.Float(), nullable=True),
        sa.Column("policy_loss", sa.Float(), nullable=True),
        sa.Column("value_loss", sa.Float(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["bai_trials.id"],
            name=op.f("fk_bai_trial_steps_trial_id_bai_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "step", name=op.f("pk_bai_trial_steps")),
    )


def downgrade() -> None:
    op.drop_table("bai_trial_steps")
    op.drop_table("bai_pareto_members")
    op.drop_index("ix_bai_trials_sweep_id_state", table_name="bai_trials")

    op.drop_table("bai_trials")
    op.drop_table("bai_pareto_fronts")
    op.drop_index("ix_bai_sweeps_status_created_at", table_name="bai_sweeps")
    op.drop_index("ix_bai_sweeps_name_status_finished_at", table_name="bai_sweeps")
    op.drop_index("ix_bai_sweeps_created_at", table_name="bai_sweeps")

    op.drop_table("bai_sweeps")
