"""SQLAlchemy models of sweeps, trials, per-step probe metrics and Pareto fronts.

Every table is prefixed ``bai_`` because Optuna keeps its own tables (and its own
``alembic_version``) in the same database.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, synonym
from sqlalchemy.types import TypeDecorator

TABLE_PREFIX = "bai_"

_NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def new_sweep_id() -> str:
    """A short random hexadecimal sweep id (12 characters)."""
    return uuid.uuid4().hex[:12]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timezone type: values are stored as naive UTC text so that they sort and
    compare correctly in SQL; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum_column(enum_type: type[enum.Enum]) -> Enum:
    # Stored as VARCHAR holding the member values: no native PostgreSQL enum types to migrate.
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class SweepStatus(enum.StrEnum):
    """Where a sweep is in its life."""

    #: Waiting for a worker to claim it (new, or reclaimed after its worker went silent).
    QUEUED = "queued"
    #: Claimed by a worker that heart-beats it.
    RUNNING = "running"
    #: Ran its whole trial budget (individual trials may still have failed).
    SUCCEEDED = "succeeded"
    #: Stopped by an error; ``Sweep.error`` says why.
    FAILED = "failed"
    #: Stopped because a user asked for it.
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True once the sweep can no longer change status."""
        return self in TERMINAL_SWEEP_STATUSES


TERMINAL_SWEEP_STATUSES = frozenset(
    {SweepStatus.SUCCEEDED, SweepStatus.FAILED, SweepStatus.CANCELLED}
)


class TrialState(enum.StrEnum):
    """Where a trial is in its life (mirrors Optuna's trial states)."""

    #: Being merged, probed or benchmarked.
    RUNNING = "running"
    #: Finished with all objective values.
    COMPLETE = "complete"
    #: Raised an error or was orphaned by a lost worker; ``Trial.error`` says why.
    FAILED = "failed"
    #: Stopped early by the scheduler or the probe's early-stop rule.
    PRUNED = "pruned"


class SeedKind(enum.StrEnum):
    """Why a trial's ratios were enqueued before the optimiser took over."""

    #: The paper's ratios (w = 0.5/0.5, alpha from its table).
    PAPER = "paper"
    #: A baseline such as the plain SFT model (alpha = 0).
    BASELINE = "baseline"
    #: Given explicitly in the sweep spec.
    EXPLICIT = "explicit"


class Base(DeclarativeBase):
    """Declarative base of the storage models."""

    metadata = MetaData(naming_convention=_NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[float]: JSON(),
    }


class Sweep(Base):
    """One sweep: its spec, its place in the work queue and its outcome."""

    __tablename__ = "bai_sweeps"
    __table_args__ = (
        Index("ix_bai_sweeps_status_created_at", "status", "created_at"),
        Index("ix_bai_sweeps_created_at", "created_at"),
        Index("ix_bai_sweeps_name_status_finished_at", "name", "status", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_sweep_id)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    status: Mapped[SweepStatus] = mapped_column(
        _enum_column(SweepStatus), default=SweepStatus.QUEUED
    )
    n_trials: Mapped[int] = mapped_column(Integer)
    study_name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    trials: Mapped[list[Trial]] = relationship(
        back_populates="sweep", lazy="raise", order_by="Trial.number", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Sweep(id={self.id!r}, name={self.name!r}, status={self.status.value!r})"


class Trial(Base):
    """One candidate ``(weights, alpha)`` of a sweep and everything measured about it."""

    __tablename__ = "bai_trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "number"),
        Index("ix_bai_trials_sweep_id_state", "sweep_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("bai_sweeps.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    weights: Mapped[list[float]]
    alpha: Mapped[float] = mapped_column(Float)
    state: Mapped[TrialState] = mapped_column(_enum_column(TrialState))
    seed_kind: Mapped[SeedKind | None] = mapped_column(_enum_column(SeedKind))
    objectives: Mapped[dict[str, Any] | None]
    stability: Mapped[dict[str, Any] | None]
    benchmarks: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    actor_path: Mapped[str | None] = mapped_column(Text)
    #: Where the trial ran: ``<node ip>/<Ray node id>`` (None before it reported).
    node: Mapped[str | None] = mapped_column(String(200))
    #: The successive-halving probe of this trial: ``{"rung", "steps", "repeats",
    #: "candidate"}`` (``candidate``: the number of the candidate's rung-0 trial); None for a
    #: sweep without ``fidelity``.
    fidelity: Mapped[dict[str, Any] | None]

    sweep: Mapped[Sweep] = relationship(back_populates="trials", lazy="raise")
    steps: Mapped[list[TrialStep]] = relationship(
        back_populates="trial", lazy="raise", order_by="TrialStep.step", passive_deletes=True
    )

    @property
    def is_seed(self) -> bool:
        """True if the trial was enqueued as a seed point rather than proposed by the sampler."""
        return self.seed_kind is not None

    @property
    def params(self) -> dict[str, Any]:
        """The merge ratios as ``{"weights": [...], "alpha": a}``."""
        return {"weights": list(self.weights), "alpha": self.alpha}

    def __repr__(self) -> str:
        return (
            f"Trial(sweep_id={self.sweep_id!r}, number={self.number}, state={self.state.value!r})"
        )


#: Per-step metric columns of :class:`TrialStep` (besides ``step`` and ``extra``), named as the
#: fields of the probe's ``evaluators.StepMetrics`` (the one vocabulary from probe to REST; the
#: probe's other fields go to ``extra``).
STEP_METRICS = (
    "length_mean",
    "length_p10",
    "length_p50",
    "length_p90",
    "truncated_fraction",
    "reward_mean",
    "kl",
    "entropy",
    "eos_rate",
    "policy_loss",
    "value_loss",
)


class TrialStep(Base):
    """The probe's metrics at one PPO update of one trial."""

    __tablename__ = "bai_trial_steps"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("bai_trials.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    length_mean: Mapped[float | None] = mapped_column(Float)
    length_p10: Mapped[float | None] = mapped_column(Float)
    length_p50: Mapped[float | None] = mapped_column(Float)
    length_p90: Mapped[float | None] = mapped_column(Float)
    truncated_fraction: Mapped[float | None] = mapped_column(Float)
    # The database column keeps its first name ("reward"); every Python name is reward_mean.
    reward_mean: Mapped[float | None] = mapped_column("reward", Float, key="reward_mean")
    #: Transitional alias for readers written before the rename (drop it once none is left).
    reward = synonym("reward_mean")
    kl: Mapped[float | None] = mapped_column(Float)
    entropy: Mapped[float | None] = mapped_column(Float)
    eos_rate: Mapped[float | None] = mapped_column(Float)
    policy_loss: Mapped[float | None] = mapped_column(Float)
    value_loss: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict[str, Any] | None]

    trial: Mapped[Trial] = relationship(back_populates="steps", lazy="raise")

    def metrics(self) -> dict[str, Any]:
        """The step's metrics as a flat dict (``extra`` merged in, ``None`` values kept)."""
        values: dict[str, Any] = {"step": self.step}
        values.update({name: getattr(self, name) for name in STEP_METRICS})
        values.update(self.extra or {})
        return values


class ParetoFront(Base):
    """The current Pareto front of a sweep; replaced as a whole whenever it changes."""

    __tablename__ = "bai_pareto_fronts"

    sweep_id: Mapped[str] = mapped_column(
        ForeignKey("bai_sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    hypervolume: Mapped[float | None] = mapped_column(Float)
    reference_point: Mapped[list[float] | None]
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    #: What the measurement tells about this front (tied trials, hypervolume interval,
    #: infeasible trials, recommendation), computed when it was stored; None if not given.
    statistics: Mapped[dict[str, Any] | None]

    members: Mapped[list[ParetoMember]] = relationship(
        back_populates="front", lazy="raise", order_by="ParetoMember.position", passive_deletes=True
    )


class ParetoMember(Base):
    """One trial on a sweep's Pareto front."""

    __tablename__ = "bai_pareto_members"
    __table_args__ = (
        ForeignKeyConstraint(["sweep_id"], ["bai_pareto_fronts.sweep_id"], ondelete="CASCADE"),
    )

    sweep_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("bai_trials.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)

    front: Mapped[ParetoFront] = relationship(back_populates="members", lazy="raise")
    trial: Mapped[Trial] = relationship(lazy="raise")


class SweepView(Base):
    """The JSON bodies of ``GET /sweeps/{id}`` and ``GET /sweeps/{id}/pareto``, rendered by
    every write that changes them (see :mod:`storage.views`); None until rendered."""

    __tablename__ = "bai_sweep_views"

    sweep_id: Mapped[str] = mapped_column(
        ForeignKey("bai_sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    summary: Mapped[str | None] = mapped_column(Text)
    pareto: Mapped[str | None] = mapped_column(Text)
