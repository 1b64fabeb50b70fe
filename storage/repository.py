"""Repository functions: every read and write the service, the workers and the runner make.

Each function takes an open session (from :func:`storage.session_scope`) as its only
positional argument and everything else by keyword. The caller's scope owns the transaction:
a function's writes commit together with the rest of the scope, or not at all.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    BindParameter,
    Select,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, selectinload

from storage.exceptions import ConflictError, InvalidArgumentError, NotFoundError
from storage.models import (
    STEP_METRICS,
    TERMINAL_SWEEP_STATUSES,
    ParetoFront,
    ParetoMember,
    SeedKind,
    Sweep,
    SweepStatus,
    Trial,
    TrialState,
    TrialStep,
    UTCDateTime,
    new_sweep_id,
    utc_now,
)
from storage.views import (
    INTERRUPTED,
    count_of,
    finished_count,
    front_rows,
    lock_sweep,
    mark_changed,
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

#: Largest page :func:`list_sweeps` and :func:`list_trials` return.
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the total number of matching rows."""

    items: list[T]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class HeartbeatResult:
    """What a worker learns when it heart-beats its sweep."""

    #: The worker still holds the sweep (running and claimed by it); stop working if False.
    owned: bool
    #: A user asked to cancel the sweep: stop, then ``finish_sweep(status=CANCELLED)``.
    cancel_requested: bool
    status: SweepStatus


@dataclass(frozen=True)
class ReclaimResult:
    """Sweeps taken back from workers whose heartbeat went stale."""

    #: Back in the queue, to be resumed by the next claim.
    requeued: list[str]
    #: Cancellation had been requested: marked cancelled instead.
    cancelled: list[str]
    #: Already lost ``max_attempts`` workers: marked failed.
    failed: list[str]


@dataclass(frozen=True)
class FrontMember:
    """One trial on a Pareto front."""

    position: int
    trial_number: int
    weights: list[float]
    alpha: float
    objectives: dict[str, Any] | None
    seed_kind: SeedKind | None


@dataclass(frozen=True)
class Front:
    """A sweep's Pareto front as last replaced."""

    sweep_id: str
    members: list[FrontMember]
    hypervolume: float | None
    reference_point: list[float] | None
    #: Incremented by every :func:`replace_front`.
    revision: int
    updated_at: datetime


@dataclass(frozen=True)
class RunningTrialProgress:
    """A running trial and its most recent probe step."""

    number: int
    weights: list[float]
    alpha: float
    started_at: datetime | None
    latest_step: TrialStep | None


@dataclass(frozen=True)
class SweepSummary:
    """Everything a status page shows about a sweep, read in one to three indexed queries."""

    #: The sweep's columns, as attributes named as on :class:`Sweep` (read-only).
    sweep: Row[Any]
    #: Number of trials per state (every state present, zeros included).
    trial_counts: dict[TrialState, int]
    front: Front | None
    running: list[RunningTrialProgress]
    #: Failed trials whose run was lost or stopped (re-run on resume; part of ``failed``).
    interrupted: int = 0

    @property
    def n_finished(self) -> int:
        """Trials counted against the budget: completed, failed or pruned, not interrupted
        (the same count as :func:`count_budget_trials`, the CLI and REST ``progress``)."""
        return finished_count(self.trial_counts, self.interrupted)


# --- helpers ---------------------------------------------------------------------------


def _coerce_enum(enum_type: type[E], value: E | str, what: str) -> E:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise InvalidArgumentError(f"invalid {what} {value!r}: expected one of {allowed}") from None


def _check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise InvalidArgumentError(f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities by ``None``: PostgreSQL's JSON type rejects them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _finite_or_none(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"step metric {name!r} must be a number, got {value!r}"
        ) from None
    return number if math.isfinite(number) else None


def _paginate(session: Session, query: Select[Any], offset: int, limit: int) -> Page[Any]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = list(session.scalars(query.offset(offset).limit(limit)))
    return Page(items=items, total=total or 0, offset=offset, limit=limit)


def _insert(session: Session, entity: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update`` on SQLite and PostgreSQL."""
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(entity)


def _at(value: datetime) -> Any:
    return literal(value, UTCDateTime())


def _require_sweep(session: Session, sweep_id: str) -> None:
    if session.scalar(select(Sweep.id).where(Sweep.id == sweep_id)) is None:
        raise NotFoundError(f"sweep {sweep_id!r} not found")


def _trial_id(session: Session, sweep_id: str, number: int) -> int:
    trial_id = session.scalar(
        select(Trial.id).where(Trial.sweep_id == sweep_id, Trial.number == number)
    )
    if trial_id is None:
        _require_sweep(session, sweep_id)
        raise NotFoundError(f"trial {number} of sweep {sweep_id!r} not found")
    return trial_id


# --- sweeps and the work queue ---------------------------------------------------------


def create_sweep(
    session: Session,
    *,
    name: str,
    spec: Mapping[str, Any],
    n_trials: int,
    study_name: str | None = None,
    sweep_id: str | None = None,
    now: datetime | None = None,
) -> Sweep:
    """Queue a new sweep.

    Args:
        name: Human name; nightly runs compare sweeps of the same name.
        spec: The sweep spec as JSON-compatible data (``SweepSpec.model_dump(mode="json")``).
        n_trials: Trial budget.
        study_name: Optuna study name; default ``bai-sweep-<id>``.
        sweep_id: Id to use; default a fresh 12-character hex id.

    Raises:
        InvalidArgumentError: empty name or a budget below 1.
        ConflictError: the id or the study name is already used.
    """
    if not name.strip():
        raise InvalidArgumentError("a sweep needs a non-empty name")
    if n_trials < 1:
        raise InvalidArgumentError(f"n_trials must be >= 1, got {n_trials}")
    sweep_id = sweep_id or new_sweep_id()
    study_name = study_name or f"bai-sweep-{sweep_id}"
    clash = session.execute(
        select(Sweep.id, Sweep.study_name).where(
            or_(Sweep.id == sweep_id, Sweep.study_name == study_name)
        )
    ).first()
    if clash is not None:
        what = f"id {sweep_id!r}" if clash.id == sweep_id else f"study name {study_name!r}"
        raise ConflictError(f"{what} is already used by sweep {clash.id!r}")
    sweep = Sweep(
        id=sweep_id,
        name=name,
        spec=_json_safe(dict(spec)),
        status=SweepStatus.QUEUED,
        n_trials=n_trials,
        study_name=study_name,
        created_at=now or utc_now(),
        cancel_requested=False,
        attempts=0,
    )
    session.add(sweep)
    session.flush()
    mark_changed(session, sweep_id)
    return sweep


def get_sweep(session: Session, *, sweep_id: str) -> Sweep:
    """The sweep with this id.

    Raises:
        NotFoundError: no such sweep.
    """
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFoundError(f"sweep {sweep_id!r} not found")
    return sweep


def list_sweeps(
    session: Session,
    *,
    offset: int = 0,
    limit: int = 50,
    status: SweepStatus | str | None = None,
    name: str | None = None,
) -> Page[Sweep]:
    """Sweeps, newest first, optionally filtered by status and exact name.

    Raises:
        InvalidArgumentError: bad page bounds or an unknown status.
    """
    _check_page(offset, limit)
    query = select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc())
    if status is not None:
        query = query.where(Sweep.status == _coerce_enum(SweepStatus, status, "sweep status"))
    if name is not None:
        query = query.where(Sweep.name == name)
    return _paginate(session, query, offset, limit)


def _claim_values(worker_id: str, now: datetime) -> dict[str, Any]:
    return {
        "status": SweepStatus.RUNNING,
        "worker_id": worker_id,
        "heartbeat_at": now,
        "started_at": func.coalesce(Sweep.started_at, _at(now)),
        "attempts": Sweep.attempts + 1,
    }


def claim_next_sweep(
    session: Session, *, worker_id: str, now: datetime | None = None
) -> Sweep | None:
    """Atomically move the oldest queued sweep to ``running`` for ``worker_id``.

    One conditional ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``: on PostgreSQL
    the sub-select takes ``FOR UPDATE SKIP LOCKED`` so concurrent workers claim different
    sweeps; on SQLite the scope's ``BEGIN IMMEDIATE`` serialises claimers. Commit the scope
    right after claiming.

    Returns:
        The claimed sweep (``attempts`` counts claims, so > 1 means a resume), or ``None``.
    """
    now = now or utc_now()
    oldest_queued = (
        select(Sweep.id)
        .where(Sweep.status == SweepStatus.QUEUED)
        .order_by(Sweep.created_at, Sweep.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(Sweep)
        .where(Sweep.id == oldest_queued, Sweep.status == SweepStatus.QUEUED)
        .values(**_claim_values(worker_id, now))
        .returning(Sweep)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return _changed(session, session.scalars(statement).first())


def claim_sweep(
    session: Session, *, sweep_id: str, worker_id: str, now: datetime | None = None
) -> Sweep | None:
    """Atomically move queued sweep ``sweep_id`` to ``running`` for ``worker_id``.

    For callers that run one particular sweep (``bai-sweep run``) rather than the oldest one.

    Returns:
        The claimed sweep, or ``None`` if it is not (or no longer) queued.
    """
    now = now or utc_now()
    statement = (
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status == SweepStatus.QUEUED)
        .values(**_claim_values(worker_id, now))
        .returning(Sweep)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return _changed(session, session.scalars(statement).first())


def _changed(session: Session, sweep: Sweep | None) -> Sweep | None:
    if sweep is not None:
        mark_changed(session, sweep.id)
    return sweep


def heartbeat(
    session: Session, *, sweep_id: str, worker_id: str, now: datetime | None = None
) -> HeartbeatResult:
    """Record that ``worker_id`` is alive and still working on ``sweep_id``.

    Raises:
        NotFoundError: no such sweep.
    """
    now = now or utc_now()
    row = session.execute(
        update(Sweep)
        .where(
            Sweep.id == sweep_id,
            Sweep.worker_id == worker_id,
            Sweep.status == SweepStatus.RUNNING,
        )
        .values(heartbeat_at=now)
        .returning(Sweep.cancel_requested, Sweep.status)
        .execution_options(synchronize_session=False)
    ).first()
    if row is not None:
        return HeartbeatResult(owned=True, cancel_requested=row.cancel_requested, status=row.status)
    current = session.execute(
        select(Sweep.cancel_requested, Sweep.status).where(Sweep.id == sweep_id)
    ).first()
    if current is None:
        raise NotFoundError(f"sweep {sweep_id!r} not found")
    return HeartbeatResult(
        owned=False, cancel_requested=current.cancel_requested, status=current.status
    )


def reclaim_stale_sweeps(
    session: Session,
    *,
    stale_after: timedelta,
    max_attempts: int | None = None,
    now: datetime | None = None,
) -> ReclaimResult:
    """Take running sweeps back from workers whose last heartbeat is older than ``stale_after``.

    A stale sweep goes back to ``queued`` (keeping its trials and Optuna study, so the next
    claim resumes it), unless cancellation was requested (-> ``cancelled``) or it has already
    been claimed ``max_attempts`` times (-> ``failed``).
    """
    if stale_after <= timedelta(0):
        raise InvalidArgumentError(f"stale_after must be positive, got {stale_after}")
    now = now or utc_now()
    stale = and_(Sweep.status == SweepStatus.RUNNING, Sweep.heartbeat_at < _at(now - stale_after))

    def move(condition: Any, **values: Any) -> list[str]:
        statement = (
            update(Sweep)
            .where(stale, condition)
            .values(**values)
            .returning(Sweep.id)
            .execution_options(synchronize_session=False)
        )
        return sorted(session.scalars(statement))

    cancelled = move(
        Sweep.cancel_requested.is_(True), status=SweepStatus.CANCELLED, finished_at=now
    )
    failed: list[str] = []
    if max_attempts is not None:
        failed = move(
            Sweep.attempts >= max_attempts,
            status=SweepStatus.FAILED,
            finished_at=now,
            error=f"abandoned: its worker stopped heart-beating {max_attempts} times",
        )
    requeued = move(literal(True), status=SweepStatus.QUEUED, worker_id=None, heartbeat_at=None)
    mark_changed(session, *cancelled, *failed, *requeued)
    return ReclaimResult(requeued=requeued, cancelled=cancelled, failed=failed)


def release_sweep(session: Session, *, sweep_id: str, worker_id: str) -> bool:
    """Hand a running sweep back to the queue (a worker shutting down cleanly).

    Returns:
        False if ``worker_id`` did not hold the sweep (nothing changed).
    """
    released = session.scalar(
        update(Sweep)
        .where(
            Sweep.id == sweep_id,
            Sweep.worker_id == worker_id,
            Sweep.status == SweepStatus.RUNNING,
        )
        .values(status=SweepStatus.QUEUED, worker_id=None, heartbeat_at=None)
        .returning(Sweep.id)
        .execution_options(synchronize_session=False)
    )
    if released is None:
        return False
    mark_changed(session, sweep_id)
    return True


def finish_sweep(
    session: Session,
    *,
    sweep_id: str,
    status: SweepStatus | str,
    error: str | None = None,
    worker_id: str | None = None,
    now: datetime | None = None,
) -> Sweep:
    """Move a queued or running sweep to a terminal status.

    Args:
        status: ``succeeded``, ``failed`` or ``cancelled``.
        error: Why it failed (stored as given).
        worker_id: If given, only this worker's claim may be finished.

    Raises:
        InvalidArgumentError: ``status`` is not terminal.
        NotFoundError: no such sweep.
        ConflictError: already finished, or held by another worker.
    """
    status = _coerce_enum(SweepStatus, status, "sweep status")
    if status not in TERMINAL_SWEEP_STATUSES:
        raise InvalidArgumentError(f"finish_sweep needs a terminal status, got {status.value!r}")
    conditions = [
        Sweep.id == sweep_id,
        Sweep.status.in_([SweepStatus.QUEUED, SweepStatus.RUNNING]),
    ]
    if worker_id is not None:
        conditions.append(Sweep.worker_id == worker_id)
    finished = session.scalars(
        update(Sweep)
        .where(*conditions)
        .values(status=status, error=error, finished_at=now or utc_now())
        .returning(Sweep)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()
    if finished is not None:
        mark_changed(session, sweep_id)
        return finished
    current = get_sweep(session, sweep_id=sweep_id)
    if current.status in TERMINAL_SWEEP_STATUSES:
        raise ConflictError(f"sweep {sweep_id!r} already {current.status.value}")
    raise ConflictError(f"sweep {sweep_id!r} is held by worker {current.worker_id!r}")


def request_cancel(session: Session, *, sweep_id: str, now: datetime | None = None) -> Sweep:
    """Ask for a sweep to stop.

    A queued sweep is cancelled at once; a running one is flagged and its worker sees
    ``cancel_requested`` at its next heartbeat. Cancelling a cancelled sweep is a no-op.

    Raises:
        NotFoundError: no such sweep.
        ConflictError: the sweep already succeeded or failed.
    """
    now = now or utc_now()
    sweep = session.scalars(
        select(Sweep)
        .where(Sweep.id == sweep_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if sweep is None:
        raise NotFoundError(f"sweep {sweep_id!r} not found")
    if sweep.status in (SweepStatus.SUCCEEDED, SweepStatus.FAILED):
        raise ConflictError(f"sweep {sweep_id!r} already {sweep.status.value}")
    if sweep.status is SweepStatus.QUEUED:
        sweep.status = SweepStatus.CANCELLED
        sweep.finished_at = now
    sweep.cancel_requested = True
    session.flush()
    mark_changed(session, sweep_id)
    return sweep


def latest_successful_sweep(
    session: Session,
    *,
    name: str,
    before: datetime | None = None,
    exclude_id: str | None = None,
) -> Sweep | None:
    """The most recently finished succeeded sweep called ``name`` (nightly comparisons).

    Args:
        before: Only sweeps finished before this time.
        exclude_id: Skip this sweep (usually the one being compared).
    """
    query = select(Sweep).where(Sweep.name == name, Sweep.status == SweepStatus.SUCCEEDED)
    if before is not None:
        query = query.where(Sweep.finished_at < _at(before))
    if exclude_id is not None:
        query = query.where(Sweep.id != exclude_id)
    query = query.order_by(Sweep.finished_at.desc(), Sweep.id.desc()).limit(1)
    return session.scalars(query).first()


# --- trials and their steps ------------------------------------------------------------


def upsert_trial(
    session: Session,
    *,
    sweep_id: str,
    number: int,
    weights: Sequence[float],
    alpha: float,
    state: TrialState | str = TrialState.RUNNING,
    seed_kind: SeedKind | str | None = None,
    objectives: Mapping[str, Any] | None = None,
    stability: Mapping[str, Any] | None = None,
    benchmarks: Mapping[str, Any] | None = None,
    error: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    duration_s: float | None = None,
    actor_path: str | None = None,
    node: str | None = None,
    fidelity: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Trial:
    """Create or update trial ``number`` of a sweep; safe to deliver twice.

    Arguments left at ``None`` keep their stored value on update. A trial that reached a
    terminal state is never moved back to ``running`` (a late re-delivery is ignored), but a
    later terminal report replaces an earlier one. ``started_at`` defaults to now on insert.

    Raises:
        NotFoundError: no such sweep.
        InvalidArgumentError: unknown state or seed kind, or non-finite ratios.
    """
    state = _coerce_enum(TrialState, state, "trial state")
    seed = None if seed_kind is None else _coerce_enum(SeedKind, seed_kind, "seed kind")
    ratios = [float(w) for w in weights] + [float(alpha)]
    if not all(math.isfinite(value) for value in ratios):
        raise InvalidArgumentError(f"weights and alpha must be finite: {list(weights)}, {alpha}")
    lock_sweep(session, sweep_id)
    values: dict[str, Any] = {
        "sweep_id": sweep_id,
        "number": number,
        "weights": ratios[:-1],
        "alpha": ratios[-1],
        "state": state,
        "seed_kind": seed,
        "objectives": None if objectives is None else _json_safe(dict(objectives)),
        "stability": None if stability is None else _json_safe(dict(stability)),
        "benchmarks": None if benchmarks is None else _json_safe(dict(benchmarks)),
        "error": error,
        "started_at": started_at or now or utc_now(),
        "finished_at": finished_at,
        "duration_s": duration_s,
        "actor_path": actor_path,
        "node": node,
        "fidelity": None if fidelity is None else _json_safe(dict(fidelity)),
    }
    statement = _insert(session, Trial).values(values)
    always = ("weights", "alpha", "state")
    provided = {
        key
        for key, value in values.items()
        if value is not None and key not in ("sweep_id", "number")
    }
    if started_at is None:
        provided.discard("started_at")
    statement = statement.on_conflict_do_update(
        index_elements=["sweep_id", "number"],
        set_={key: statement.excluded[key] for key in sorted(provided | set(always))},
        where=or_(
            Trial.state == TrialState.RUNNING, statement.excluded.state != TrialState.RUNNING
        ),
    )
    session.execute(statement, execution_options={"synchronize_session": False})
    return session.scalars(
        select(Trial)
        .where(Trial.sweep_id == sweep_id, Trial.number == number)
        .execution_options(populate_existing=True)
    ).one()


def _as_mapping(step: Any) -> dict[str, Any]:
    if isinstance(step, Mapping):
        return dict(step)
    if dataclasses.is_dataclass(step) and not isinstance(step, type):
        return dataclasses.asdict(step)
    if hasattr(step, "model_dump"):
        return step.model_dump()
    raise InvalidArgumentError(
        f"a step must be a mapping, a dataclass or a pydantic model: {step!r}"
    )


def _step_row(trial_id: int, step: Any) -> dict[str, Any]:
    values = _as_mapping(step)
    if values.get("step") is None:
        raise InvalidArgumentError(f"a step needs a 'step' number: {values!r}")
    row: dict[str, Any] = {"trial_id": trial_id, "step": int(values.pop("step"))}
    if "reward" in values and "reward_mean" not in values:  # the name writers used before
        values["reward_mean"] = values.pop("reward")
    for name in STEP_METRICS:
        row[name] = _finite_or_none(values.pop(name, None), name)
    extra = {key: value for key, value in _json_safe(values).items() if value is not None}
    row["extra"] = extra or None
    return row


def record_steps(
    session: Session, *, sweep_id: str, trial_number: int, steps: Iterable[Any]
) -> int:
    """Store per-step probe metrics of a trial; a re-delivered step replaces its earlier copy.

    Args:
        steps: Mappings, dataclasses or pydantic models with a ``step`` number and any of
            :data:`storage.models.STEP_METRICS`; other non-null fields go to ``extra``.
            Non-finite values are stored as ``None``.

    Returns:
        The number of distinct steps written.

    Raises:
        NotFoundError: no such trial (record it with :func:`upsert_trial` first).
    """
    lock_sweep(session, sweep_id)
    trial_id = _trial_id(session, sweep_id, trial_number)
    rows = {row["step"]: row for row in (_step_row(trial_id, step) for step in steps)}
    ordered = [rows[key] for key in sorted(rows)]
    if ordered:
        # One cached statement run as executemany: a multi-row VALUES would be compiled anew
        # for every batch, which costs far more than the database work.
        statement = _insert(session, TrialStep.__table__)
        statement = statement.on_conflict_do_update(
            index_elements=["trial_id", "step"],
            set_={name: statement.excluded[name] for name in (*STEP_METRICS, "extra")},
        )
        session.execute(statement, ordered)
    return len(ordered)


def count_budget_trials(session: Session, *, sweep_id: str) -> int:
    """Trials counted against a sweep's budget: finished and not interrupted.

    The one definition of a sweep's progress (CLI, REST and reports): a trial whose run was
    lost or stopped (error starting with :data:`INTERRUPTED_PREFIX`) is re-run on resume and
    does not count.
    """
    return (
        session.scalar(
            select(func.count()).where(
                Trial.sweep_id == sweep_id,
                Trial.state != TrialState.RUNNING,
                or_(Trial.error.is_(None), ~INTERRUPTED),
            )
        )
        or 0
    )


def fail_running_trials(
    session: Session, *, sweep_id: str, error: str, now: datetime | None = None
) -> list[int]:
    """Mark a sweep's ``running`` trials failed (orphans of a lost worker, before a resume).

    Returns:
        The numbers of the trials marked failed.
    """
    now = now or utc_now()
    if not lock_sweep(session, sweep_id, must_exist=False):
        return []
    return sorted(
        session.scalars(
            update(Trial)
            .where(Trial.sweep_id == sweep_id, Trial.state == TrialState.RUNNING)
            .values(state=TrialState.FAILED, error=error, finished_at=now)
            .returning(Trial.number)
            .execution_options(synchronize_session=False)
        )
    )


def list_trials(
    session: Session,
    *,
    sweep_id: str,
    offset: int = 0,
    limit: int = 100,
    state: TrialState | str | None = None,
) -> Page[Trial]:
    """A sweep's trials by number (steps not loaded).

    Raises:
        NotFoundError: no such sweep.
        InvalidArgumentError: bad page bounds or an unknown state.
    """
    _check_page(offset, limit)
    _require_sweep(session, sweep_id)
    query = select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.number)
    if state is not None:
        query = query.where(Trial.state == _coerce_enum(TrialState, state, "trial state"))
    return _paginate(session, query, offset, limit)


def get_trial(session: Session, *, sweep_id: str, number: int) -> Trial:
    """Trial ``number`` of a sweep with its ``steps`` loaded (ordered by step).

    Raises:
        NotFoundError: no such sweep or trial.
    """
    trial = session.scalars(
        select(Trial)
        .where(Trial.sweep_id == sweep_id, Trial.number == number)
        .options(selectinload(Trial.steps))
    ).first()
    if trial is None:
        _require_sweep(session, sweep_id)
        raise NotFoundError(f"trial {number} of sweep {sweep_id!r} not found")
    return trial


# --- Pareto fronts and summaries -------------------------------------------------------


def replace_front(
    session: Session,
    *,
    sweep_id: str,
    members: Sequence[int],
    hypervolume: float | None,
    reference_point: Sequence[float] | None,
    statistics: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Front:
    """Replace a sweep's Pareto front as a whole (readers see the old or the new one).

    Args:
        members: Trial numbers on the front, in display order.
        hypervolume: Of the front w.r.t. ``reference_point``, at this moment.
        statistics: What the measurement tells about this front
            (``sweeps.reports.front_statistics``), served with it by ``GET /sweeps/{id}/pareto``;
            without them the service computes them on each read.

    Raises:
        NotFoundError: no such sweep, or a member is not a trial of it.
    """
    lock_sweep(session, sweep_id)
    numbers = list(dict.fromkeys(int(number) for number in members))
    ids = dict(
        session.execute(
            select(Trial.number, Trial.id).where(
                Trial.sweep_id == sweep_id, Trial.number.in_(numbers)
            )
        )
        .tuples()
        .all()
    )
    missing = [number for number in numbers if number not in ids]
    if missing:
        raise NotFoundError(f"trials {missing} of sweep {sweep_id!r} not found")
    now = now or utc_now()
    # Upsert the front row first: on PostgreSQL its row lock serialises concurrent replacers.
    statement = _insert(session, ParetoFront).values(
        sweep_id=sweep_id,
        hypervolume=_finite_or_none(hypervolume, "hypervolume"),
        reference_point=None if reference_point is None else [float(x) for x in reference_point],
        statistics=None if statistics is None else _json_safe(dict(statistics)),
        revision=1,
        updated_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["sweep_id"],
        set_={
            "hypervolume": statement.excluded.hypervolume,
            "reference_point": statement.excluded.reference_point,
            "statistics": statement.excluded.statistics,
            "updated_at": statement.excluded.updated_at,
            "revision": ParetoFront.revision + 1,
        },
    )
    session.execute(statement, execution_options={"synchronize_session": False})
    member_table = cast(Table, ParetoMember.__table__)
    session.execute(member_table.delete().where(member_table.c.sweep_id == sweep_id))
    if numbers:
        session.execute(
            member_table.insert(),
            [
                {"sweep_id": sweep_id, "trial_id": ids[number], "position": position}
                for position, number in enumerate(numbers)
            ],
        )
    front = _load_front(session, sweep_id)
    assert front is not None
    return front


# The hot reads (``GET /sweeps/{id}`` and ``/pareto`` poll them) are built once, with the sweep
# id as a bound parameter. A front is always read in one statement (header and members): two
# statements could straddle a concurrent ``replace_front`` on PostgreSQL (READ COMMITTED).

_SWEEP_ID: BindParameter[str] = bindparam("sweep_id", type_=String)


# Columns, not the entity: the summary is read, never changed, and ORM loading costs as much
# as the query.
_SWEEP_COUNTS_QUERY: Select[Any] = select(
    *Sweep.__table__.c,
    *(count_of(Trial.state == state, f"n_{state.value}") for state in TrialState),
    count_of(INTERRUPTED, "n_interrupted"),
).where(Sweep.id == _SWEEP_ID)
_LATEST_STEP = (
    select(TrialStep.trial_id, func.max(TrialStep.step).label("step"))
    .join(Trial, Trial.id == TrialStep.trial_id)
    .where(Trial.sweep_id == _SWEEP_ID, Trial.state == TrialState.RUNNING)
    .group_by(TrialStep.trial_id)
    .subquery()
)
_RUNNING_QUERY = (
    select(Trial.number, Trial.weights, Trial.alpha, Trial.started_at, TrialStep)
    .outerjoin(_LATEST_STEP, _LATEST_STEP.c.trial_id == Trial.id)
    .outerjoin(
        TrialStep,
        and_(TrialStep.trial_id == Trial.id, TrialStep.step == _LATEST_STEP.c.step),
    )
    .where(Trial.sweep_id == _SWEEP_ID, Trial.state == TrialState.RUNNING)
    .order_by(Trial.number)
)


def _front_rows(session: Session, sweep_id: str) -> list[Row[Any]]:
    """The rows of the sweep's front (header columns on each), in one statement.

    Raises:
        NotFoundError: no such sweep.
    """
    return front_rows(session.connection(), sweep_id)


def _front_of(sweep_id: str, rows: list[Row[Any]]) -> Front | None:
    first = rows[0]
    if first.revision is None:
        return None
    members = [
        FrontMember(
            position=row.position,
            trial_number=row.number,
            weights=list(row.weights),
            alpha=row.alpha,
            objectives=row.objectives,
            seed_kind=row.seed_kind,
        )
        for row in rows
        if row.position is not None
    ]
    return Front(
        sweep_id=sweep_id,
        members=members,
        hypervolume=first.hypervolume,
        reference_point=first.reference_point,
        revision=first.revision,
        updated_at=first.updated_at,
    )


def _load_front(session: Session, sweep_id: str) -> Front | None:
    return _front_of(sweep_id, _front_rows(session, sweep_id))


def get_front(session: Session, *, sweep_id: str) -> Front | None:
    """A sweep's current Pareto front, or ``None`` before the first trial finished.

    Raises:
        NotFoundError: no such sweep.
    """
    return _load_front(session, sweep_id)


def sweep_summary(session: Session, *, sweep_id: str) -> SweepSummary:
    """Status, trial counts per state, the front and the latest step of each running trial.

    Raises:
        NotFoundError: no such sweep.
    """
    row = session.connection().execute(_SWEEP_COUNTS_QUERY, {"sweep_id": sweep_id}).first()
    if row is None:
        raise NotFoundError(f"sweep {sweep_id!r} not found")
    counts = {state: getattr(row, f"n_{state.value}") for state in TrialState}
    running: list[RunningTrialProgress] = []
    if counts[TrialState.RUNNING]:
        running = [
            RunningTrialProgress(
                number=trial.number,
                weights=list(trial.weights),
                alpha=trial.alpha,
                started_at=trial.started_at,
                latest_step=trial.TrialStep,
            )
            for trial in session.execute(_RUNNING_QUERY, {"sweep_id": sweep_id})
        ]
    return SweepSummary(
        sweep=row,
        trial_counts=counts,
        front=_load_front(session, sweep_id),
        running=running,
        interrupted=row.n_interrupted,
    )
