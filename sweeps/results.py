"""Sweep results from the database: report data and the stored Pareto front.

The runner calls :func:`update_front` after every finished trial; the nightly CLI and the REST
service call :func:`load_report_data` and hand it to :func:`sweeps.reports.build_report`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from evaluators.stability import DEFAULT_COLLAPSE_THRESHOLD
from storage import repository
from storage.models import Sweep, Trial, TrialState
from sweeps.reports import ObjectiveInfo, SweepReportData, TrialRecord, front_statistics
from sweeps.spec import ObjectiveSpec, default_objectives

__all__ = [
    "collapse_threshold_of",
    "front_statistics_of",
    "load_report_data",
    "objectives_of",
    "trial_record",
    "update_front",
]


def objectives_of(spec: Mapping[str, Any]) -> list[ObjectiveInfo]:
    """The objectives (with resolved directions and references) of a stored spec."""
    raw = spec.get("objectives")
    objectives = (
        [ObjectiveSpec.model_validate(item) for item in raw] if raw else default_objectives()
    )
    return [ObjectiveInfo(o.name, o.resolved_direction, o.resolved_reference) for o in objectives]


def collapse_threshold_of(spec: Mapping[str, Any]) -> float:
    """The probe's collapse threshold of a stored spec (the default when it sets none)."""
    probe = spec.get("probe")
    value = probe.get("collapse_threshold") if isinstance(probe, Mapping) else None
    return float(value) if value is not None else DEFAULT_COLLAPSE_THRESHOLD


def trial_record(trial: Trial, *, with_steps: bool = False) -> TrialRecord:
    """A storage trial as report data (``with_steps`` needs ``trial.steps`` loaded)."""
    return TrialRecord(
        number=trial.number,
        weights=tuple(trial.weights),
        alpha=trial.alpha,
        state=trial.state.value,
        seed_kind=trial.seed_kind.value if trial.seed_kind else None,
        objectives=trial.objectives,
        stability=trial.stability,
        benchmarks=trial.benchmarks,
        steps=[step.metrics() for step in trial.steps] if with_steps else [],
        error=trial.error,
        finished_at=trial.finished_at,
        duration_s=trial.duration_s,
        fidelity=trial.fidelity,
    )


def _all_trials(session: Session, sweep_id: str) -> list[Trial]:
    trials: list[Trial] = []
    while True:
        page = repository.list_trials(
            session, sweep_id=sweep_id, offset=len(trials), limit=repository.MAX_PAGE_SIZE
        )
        trials += page.items
        if not page.items or len(trials) >= page.total:
            return trials


def _report_data(sweep: Sweep, records: list[TrialRecord]) -> SweepReportData:
    return SweepReportData(
        sweep_id=sweep.id,
        name=sweep.name,
        status=sweep.status.value,
        objectives=objectives_of(sweep.spec),
        trials=records,
        n_trials=sweep.n_trials,
        error=sweep.error,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
        collapse_threshold=collapse_threshold_of(sweep.spec),
    )


def load_report_data(
    session: Session, *, sweep_id: str, with_steps: bool = True
) -> SweepReportData:
    """Everything :func:`sweeps.reports.build_report` needs about a sweep.

    Args:
        with_steps: Load the per-step curves (needed for the curve figures), one query per
            trial.

    Raises:
        storage.NotFoundError: no such sweep.
    """
    sweep = repository.get_sweep(session, sweep_id=sweep_id)
    trials = _all_trials(session, sweep_id)
    if with_steps:
        trials = [repository.get_trial(session, sweep_id=sweep_id, number=t.number) for t in trials]
    return _report_data(sweep, [trial_record(t, with_steps=with_steps) for t in trials])


def update_front(session: Session, *, sweep_id: str) -> repository.Front:
    """Recompute the sweep's Pareto front from its complete trials and store it with its
    statistics (what ``GET /sweeps/{id}/pareto`` serves)."""
    sweep = repository.get_sweep(session, sweep_id=sweep_id)
    trials = _all_trials(session, sweep_id)
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    data = _report_data(sweep, [trial_record(t) for t in complete])
    return repository.replace_front(
        session,
        sweep_id=sweep_id,
        members=[t.number for t in data.front()],
        hypervolume=data.hypervolume(),
        reference_point=data.reference_point,
        statistics=front_statistics(_report_data(sweep, [trial_record(t) for t in trials])),
    )


def front_statistics_of(session: Session, *, sweep_id: str) -> dict[str, Any]:
    """:func:`sweeps.reports.front_statistics` of a stored sweep (its trials without steps).

    Raises:
        storage.NotFoundError: no such sweep.
    """
    return front_statistics(load_report_data(session, sweep_id=sweep_id, with_steps=False))
