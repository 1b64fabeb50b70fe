"""Pre-rendered JSON of the hot reads, ``GET /sweeps/{id}`` and ``GET /sweeps/{id}/pareto``.

Dashboards poll these two bodies many times a second, while they change only when a worker
writes. So the writes render them: every repository function that changes what they show marks
its sweep (:func:`mark_changed`), and the session renders each marked sweep's two bodies once,
just before it commits, into ``bai_sweep_views`` in the same transaction. A read is then one
primary-key ``SELECT`` of a text column served as is (:func:`read_stored`).

The writers lock the sweep's row first (:func:`lock_sweep`), so on PostgreSQL two transactions
writing one sweep take turns and the later one renders what the earlier one committed. The
bodies have the shape of ``service.schemas.SweepDetail`` and ``ParetoFrontBody`` (the service's
tests check that they round-trip through them unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic_core
from sqlalchemy import Connection, Engine, String, Table, and_, bindparam, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from storage.engine import display_url, hot_read_engine
from storage.exceptions import NotFoundError, StorageError
from storage.models import (
    STEP_METRICS,
    ParetoFront,
    ParetoMember,
    Sweep,
    SweepView,
    Trial,
    TrialState,
    TrialStep,
)

__all__ = [
    "INTERRUPTED",
    "INTERRUPTED_PREFIX",
    "count_of",
    "dump_body",
    "finished_count",
    "front_rows",
    "lock_sweep",
    "mark_changed",
    "objectives_body",
    "pareto_body",
    "read_stored",
    "render_pareto",
    "render_summary",
    "summary_body",
]

#: Error prefix of a trial its run left unfinished; such a trial is re-run, not counted.
INTERRUPTED_PREFIX = "interrupted"

_CHANGED = "bai_sweep_views_changed"
_SWEEP_ID = bindparam("sweep_id", type_=String)
_VIEWS = SweepView.__table__
assert isinstance(_VIEWS, Table)


def lock_sweep(session: Session, sweep_id: str, *, must_exist: bool = True) -> bool:
    """Lock the sweep's row for this transaction (PostgreSQL; SQLite writers already hold the
    database's write lock) and mark its views changed; False if there is no such sweep.

    Raises:
        NotFoundError: no such sweep and ``must_exist``.
    """
    # NO KEY UPDATE: conflicts with other writers of the sweep, not with the key-share locks
    # that inserting its trials takes.
    query = select(Sweep.id).where(Sweep.id == sweep_id).with_for_update(key_share=True)
    if session.scalar(query) is None:
        if must_exist:
            raise NotFoundError(f"sweep {sweep_id!r} not found")
        return False
    mark_changed(session, sweep_id)
    return True


def mark_changed(session: Session, *sweep_ids: str) -> None:
    """Render these sweeps' views when the session commits."""
    session.info.setdefault(_CHANGED, set()).update(sweep_ids)


@event.listens_for(Session, "before_commit")
def _render_changed(session: Session) -> None:
    changed = session.info.pop(_CHANGED, None)
    if changed:
        session.flush()
        for sweep_id in sorted(changed):
            _store_views(session, sweep_id)


@event.listens_for(Session, "after_rollback")
def _forget_changed(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def _store_views(session: Session, sweep_id: str) -> None:
    summary = render_summary(session.connection(), sweep_id)
    if summary is None:
        return  # deleted in this transaction
    values = {"sweep_id": sweep_id, "summary": summary, "pareto": _render_pareto(session, sweep_id)}
    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert
    statement = insert(_VIEWS).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["sweep_id"],
        set_={"summary": statement.excluded.summary, "pareto": statement.excluded.pareto},
    )
    session.execute(statement)


def read_stored(engine: Engine, sweep_id: str, kind: str) -> str | None:
    """The stored body of ``kind`` (``"summary"`` or ``"pareto"``) of a sweep; None when there
    is none (no such sweep, or never rendered).

    The poll's path: one statement on a raw connection of :func:`storage.engine.hot_read_engine`
    (no transaction, no SQLAlchemy statement machinery).

    Raises:
        StorageError: the database failed (the connection is discarded).
    """
    hot = hot_read_engine(engine)
    query = _RAW_READS[hot.dialect.paramstyle == "qmark"][kind]
    connection = hot.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(query, (sweep_id,))
            row = cursor.fetchone()
        finally:
            cursor.close()
    except hot.dialect.loaded_dbapi.Error as exc:
        connection.invalidate()
        raise StorageError(f"database error ({display_url(engine.url)}): {exc}") from exc
    finally:
        connection.close()
    return None if row is None else row[0]


_RAW_READS = {
    qmark: {
        kind: f"SELECT {kind} FROM bai_sweep_views WHERE sweep_id = {'?' if qmark else '%s'}"
        for kind in ("summary", "pareto")
    }
    for qmark in (False, True)
}


def dump_body(body: Any) -> str:
    """A body as JSON text (as pydantic writes it: ISO datetimes, NaN as null)."""
    return pydantic_core.to_json(body, inf_nan_mode="null").decode()


# --- the summary -------------------------------------------------------------------------


def count_of(condition: Any, label: str) -> Any:
    """A column ``label``: the number of the sweep's trials meeting ``condition``."""
    return (
        select(func.count())
        .where(Trial.sweep_id == Sweep.id, condition)
        .correlate(Sweep)
        .scalar_subquery()
        .label(label)
    )


#: The condition of an interrupted trial (failed because its run was lost or stopped).
INTERRUPTED = and_(Trial.state == TrialState.FAILED, Trial.error.like(f"{INTERRUPTED_PREFIX}%"))
_SUMMARY_QUERY = select(
    *Sweep.__table__.c,
    *(count_of(Trial.state == state, f"n_{state.value}") for state in TrialState),
    count_of(INTERRUPTED, "n_interrupted"),
    ParetoFront.revision,
    ParetoFront.hypervolume,
    ParetoFront.updated_at.label("front_updated_at"),
    select(func.count())
    .where(ParetoMember.sweep_id == Sweep.id)
    .correlate(Sweep)
    .scalar_subquery()
    .label("front_size"),
).select_from(Sweep.__table__.outerjoin(ParetoFront, ParetoFront.sweep_id == Sweep.id))
_SUMMARY_QUERY = _SUMMARY_QUERY.where(Sweep.id == _SWEEP_ID)
_LATEST_STEP = (
    select(TrialStep.trial_id, func.max(TrialStep.step).label("step"))
    .join(Trial, Trial.id == TrialStep.trial_id)
    .where(Trial.sweep_id == _SWEEP_ID, Trial.state == TrialState.RUNNING)
    .group_by(TrialStep.trial_id)
    .subquery()
)
_STEP_COLUMNS = [TrialStep.step, *(getattr(TrialStep, name) for name in STEP_METRICS)]
_RUNNING_QUERY = (
    select(
        Trial.number,
        Trial.weights,
        Trial.alpha,
        Trial.started_at,
        *_STEP_COLUMNS,
        TrialStep.extra,
    )
    .outerjoin(_LATEST_STEP, _LATEST_STEP.c.trial_id == Trial.id)
    .outerjoin(
        TrialStep,
        and_(TrialStep.trial_id == Trial.id, TrialStep.step == _LATEST_STEP.c.step),
    )
    .where(Trial.sweep_id == _SWEEP_ID, Trial.state == TrialState.RUNNING)
    .order_by(Trial.number)
)


def objectives_body(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """The spec's objectives with their directions (defaulted from the name)."""
    from sweeps.spec import DEFAULT_DIRECTIONS

    objectives = []
    for entry in spec.get("objectives") or []:
        name = entry if isinstance(entry, str) else entry["name"]
        direction = None if isinstance(entry, str) else entry.get("direction")
        objectives.append({"name": name, "direction": direction or DEFAULT_DIRECTIONS[name]})
    return objectives


def _step_body(row: Row[Any]) -> dict[str, Any] | None:
    if row.step is None:
        return None
    body: dict[str, Any] = {"step": row.step}
    body.update({name: getattr(row, name) for name in STEP_METRICS})
    body["extra"] = row.extra
    return body


def finished_count(counts: Mapping[TrialState, int], interrupted: int) -> int:
    """Trials counted against the budget: every state but running, less the interrupted ones
    (re-run on resume). The one definition for REST ``progress`` and ``SweepSummary``."""
    return sum(n for state, n in counts.items() if state is not TrialState.RUNNING) - interrupted


def summary_body(row: Any, running: list[Row[Any]]) -> dict[str, Any]:
    """The body of ``GET /sweeps/{id}`` from the summary query's rows."""
    counts = {state: getattr(row, f"n_{state.value}") for state in TrialState}
    interrupted = row.n_interrupted
    front = None
    if row.revision is not None:
        front = {
            "size": row.front_size,
            "hypervolume": row.hypervolume,
            "revision": row.revision,
            "updated_at": row.front_updated_at,
        }
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status.value,
        "n_trials": row.n_trials,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "error": row.error,
        "cancel_requested": row.cancel_requested,
        "attempts": row.attempts,
        "objectives": objectives_body(row.spec),
        "progress": {
            "total": row.n_trials,
            "completed": counts[TrialState.COMPLETE],
            "failed": counts[TrialState.FAILED],
            "pruned": counts[TrialState.PRUNED],
            "running": counts[TrialState.RUNNING],
            "interrupted": interrupted,
            "finished": finished_count(counts, interrupted),
        },
        "front": front,
        "running_trials": [
            {
                "number": trial.number,
                "weights": [float(w) for w in trial.weights],
                "alpha": float(trial.alpha),
                "started_at": trial.started_at,
                "latest_step": _step_body(trial),
            }
            for trial in running
        ],
        "spec": row.spec,
    }


def render_summary(connection: Connection, sweep_id: str) -> str | None:
    """The body of ``GET /sweeps/{id}`` as it stands (None: no such sweep)."""
    row = connection.execute(_SUMMARY_QUERY, {"sweep_id": sweep_id}).first()
    if row is None:
        return None
    running: list[Row[Any]] = []
    if row.n_running:
        running = list(connection.execute(_RUNNING_QUERY, {"sweep_id": sweep_id}))
    return dump_body(summary_body(row, running))


# --- the front ---------------------------------------------------------------------------

_FRONT_QUERY = (
    select(
        Sweep.spec,
        ParetoFront.revision,
        ParetoFront.hypervolume,
        ParetoFront.reference_point,
        ParetoFront.updated_at,
        ParetoFront.statistics,
        ParetoMember.position,
        Trial.number,
        Trial.weights,
        Trial.alpha,
        Trial.objectives,
        Trial.seed_kind,
        Trial.stability,
        Trial.benchmarks,
    )
    .select_from(Sweep)
    .outerjoin(ParetoFront, ParetoFront.sweep_id == Sweep.id)
    .outerjoin(ParetoMember, ParetoMember.sweep_id == ParetoFront.sweep_id)
    .outerjoin(Trial, Trial.id == ParetoMember.trial_id)
    .where(Sweep.id == _SWEEP_ID)
    .order_by(ParetoMember.position)
)


def pareto_body(
    sweep_id: str, rows: list[Row[Any]], statistics: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The body of ``GET /sweeps/{id}/pareto`` from the front query's rows and the front's
    statistics (``sweeps.reports.front_statistics``)."""
    from sweeps.forecast import forecasts_of
    from sweeps.retention import correctness_retention_of, forgetting_of

    first = rows[0]
    body: dict[str, Any] = {
        "sweep_id": sweep_id,
        "objectives": objectives_body(first.spec),
        "hypervolume": first.hypervolume,
        "reference_point": first.reference_point,
        "revision": first.revision or 0,
        "updated_at": first.updated_at,
        "members": [
            {
                "position": row.position,
                "trial_number": row.number,
                "weights": [float(w) for w in row.weights],
                "alpha": float(row.alpha),
                "objectives": row.objectives,
                "seed_kind": None if row.seed_kind is None else row.seed_kind.value,
                "forgetting": forgetting_of(row.benchmarks),
                "correctness_retention": correctness_retention_of(row.stability),
                "forecasts": forecasts_of(row.stability),
            }
            for row in rows
            if row.position is not None
        ],
        "tied": [],
        "hypervolume_interval": None,
        "infeasible": [],
        "recommendation": None,
        "gated_out": [],
    }
    for key in ("tied", "hypervolume_interval", "infeasible", "recommendation", "gated_out"):
        if statistics is not None and key in statistics:
            body[key] = statistics[key]
    return body


def front_rows(connection: Connection, sweep_id: str) -> list[Row[Any]]:
    """The rows of the sweep's front with its spec, in one statement (a front is always read
    whole: two statements could straddle a concurrent replacement on PostgreSQL).

    Raises:
        NotFoundError: no such sweep.
    """
    rows = list(connection.execute(_FRONT_QUERY, {"sweep_id": sweep_id}))
    if not rows:
        raise NotFoundError(f"sweep {sweep_id!r} not found")
    return rows


def render_pareto(connection: Connection, sweep_id: str) -> str | None:
    """The body of ``GET /sweeps/{id}/pareto`` with the statistics stored with the front;
    None when a front was stored without them (the service then computes them).

    Raises:
        NotFoundError: no such sweep.
    """
    rows = front_rows(connection, sweep_id)
    first = rows[0]
    if first.revision is not None and first.statistics is None:
        return None
    return dump_body(pareto_body(sweep_id, rows, first.statistics))


def _render_pareto(session: Session, sweep_id: str) -> str | None:
    return render_pareto(session.connection(), sweep_id)
