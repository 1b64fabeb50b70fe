"""``/sweeps``: launch, list, inspect and cancel sweeps; their trials and Pareto front."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status
from sqlalchemy import Engine

from service.auth import require_read_access, require_write_access
from service.deps import CacheDep, EngineDep, SettingsDep
from service.hot_reads import NotStoredError, stored_body
from service.schemas import (
    SWEEP_SPEC_EXAMPLE,
    ErrorBody,
    ParetoFrontBody,
    SweepCreated,
    SweepDetail,
    SweepItem,
    SweepPage,
    TrialDetail,
    TrialPage,
)
from service.validation import validate_spec
from storage import repository, views
from storage.engine import session_scope
from storage.exceptions import NotFoundError
from storage.models import SweepStatus, TrialState
from storage.repository import MAX_PAGE_SIZE
from sweeps.spec import SweepSpec


def _render_sweep(engine: Engine, sweep_id: str) -> bytes:
    try:
        return stored_body(engine, sweep_id, "summary")
    except NotStoredError:
        pass
    # Stored before the views were: render it now.
    with session_scope(engine, read_only=True) as session:
        body = views.render_summary(session.connection(), sweep_id)
    if body is None:
        raise NotFoundError(f"sweep {sweep_id!r} not found")
    return body.encode()


def _render_pareto(engine: Engine, sweep_id: str) -> bytes:
    try:
        return stored_body(engine, sweep_id, "pareto")
    except NotStoredError:
        pass
    # A front stored without its statistics (or before the views were): compute them.
    from sweeps.results import front_statistics_of

    with session_scope(engine, read_only=True) as session:
        rows = views.front_rows(session.connection(), sweep_id)
        statistics = rows[0].statistics
        if rows[0].revision is not None and statistics is None:
            statistics = front_statistics_of(session, sweep_id=sweep_id)
    return views.dump_body(views.pareto_body(sweep_id, rows, statistics)).encode()


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing bearer token"},
    403: {"model": ErrorBody, "description": "Invalid bearer token"},
    404: {"model": ErrorBody, "description": "No such sweep (or trial)"},
    422: {"model": ErrorBody, "description": "Invalid request"},
}

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=_ERRORS)
_READ = [Depends(require_read_access)]
_WRITE = [Depends(require_write_access)]

SweepId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Sweep id as returned by POST /sweeps.",
        examples=["3f9c2a7b1d04"],
    ),
]
#: Largest value of a 32-bit signed integer: bounds offsets and trial numbers for every database.
MAX_INT32 = 2**31 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_INT32, description="Rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Rows per page.")]

_SPEC_EXAMPLES = {
    "simplex": {
        "summary": "Search w on the simplex and alpha in [0, 1]",
        "value": SWEEP_SPEC_EXAMPLE,
    },
    "fixed_weights": {
        "summary": "Paper weights w = (0.5, 0.5), search alpha only",
        "value": {
            **SWEEP_SPEC_EXAMPLE,
            "search": {"alpha": [0.1, 0.9], "weights": [0.5, 0.5], "n_trials": 8},
        },
    },
}


@router.post(
    "",
    dependencies=_WRITE,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepCreated,
    summary="Validate and queue a sweep",
    responses={400: {"model": ErrorBody, "description": "The body could not be read"}},
)
def create_sweep(
    spec: Annotated[SweepSpec, Body(openapi_examples=_SPEC_EXAMPLES)],
    settings: SettingsDep,
    engine: EngineDep,
) -> SweepCreated:
    """Check the spec (schema; model paths exist under the model roots; checkpoints
    merge-compatible from their headers; prompts, batch and response budget fit the actor;
    reward head, tokenizer, devices and benchmark tasks usable) and queue it. Nothing is queued
    if any check fails. A worker picks the sweep up; poll `GET /sweeps/{id}`."""
    checked = validate_spec(
        spec,
        settings.resolved_model_roots,
        trust_remote_code=settings.trust_remote_code,
        local_devices=settings.ray_address is None,
    )
    with session_scope(engine) as session:
        sweep = repository.create_sweep(
            session,
            name=checked.name,
            spec=checked.to_json_dict(),
            n_trials=checked.trial_budget(),
        )
    return SweepCreated(id=sweep.id, status=sweep.status)


@router.get("", dependencies=_READ, response_model=SweepPage, summary="List sweeps, newest first")
def list_sweeps(
    engine: EngineDep,
    offset: Offset = 0,
    limit: Limit = 50,
    sweep_status: Annotated[
        SweepStatus | None, Query(alias="status", description="Only sweeps in this status.")
    ] = None,
    name: Annotated[
        str | None, Query(max_length=200, description="Only sweeps of this name.")
    ] = None,
) -> SweepPage:
    """A page of sweeps with their status."""
    with session_scope(engine, read_only=True) as session:
        page = repository.list_sweeps(
            session, offset=offset, limit=limit, status=sweep_status, name=name
        )
        return SweepPage.model_validate(page)


@router.get(
    "/{sweep_id}",
    dependencies=_READ,
    response_model=SweepDetail,
    summary="Status, progress and front summary",
)
async def get_sweep(sweep_id: SweepId, engine: EngineDep, cache: CacheDep) -> Response:
    """Status, completed / total trials, front size and the latest step metrics of running
    trials (may be up to `BAI_SWEEP_READ_CACHE_TTL` seconds old)."""
    body = await cache.get_or_render(("summary", sweep_id), lambda: _render_sweep(engine, sweep_id))
    return Response(body, media_type="application/json")


@router.post(
    "/{sweep_id}/cancel",
    dependencies=_WRITE,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepItem,
    summary="Cancel a sweep",
    responses={409: {"model": ErrorBody, "description": "The sweep already finished"}},
)
def cancel_sweep(sweep_id: SweepId, engine: EngineDep, cache: CacheDep) -> SweepItem:
    """A queued sweep is cancelled at once; a running one stops after its worker's next
    heartbeat (status `cancelled` then). Cancelling a cancelled sweep is a no-op."""
    with session_scope(engine) as session:
        sweep = repository.request_cancel(session, sweep_id=sweep_id)
    cache.invalidate(sweep_id)
    return SweepItem.model_validate(sweep)


@router.get(
    "/{sweep_id}/trials", dependencies=_READ, response_model=TrialPage, summary="A sweep's trials"
)
def list_trials(
    sweep_id: SweepId,
    engine: EngineDep,
    offset: Offset = 0,
    limit: Limit = 100,
    state: Annotated[TrialState | None, Query(description="Only trials in this state.")] = None,
) -> TrialPage:
    """Trials by number with their ratios, state and objective values."""
    with session_scope(engine, read_only=True) as session:
        page = repository.list_trials(
            session, sweep_id=sweep_id, offset=offset, limit=limit, state=state
        )
        return TrialPage.model_validate(page)


@router.get(
    "/{sweep_id}/trials/{number}",
    dependencies=_READ,
    response_model=TrialDetail,
    summary="One trial: params, metrics and per-step curves",
)
def get_trial(
    sweep_id: SweepId,
    number: Annotated[int, Path(ge=0, le=MAX_INT32, description="Trial number.")],
    engine: EngineDep,
) -> TrialDetail:
    """Parameters, objective values, stability and benchmark metrics, and every probe step."""
    with session_scope(engine, read_only=True) as session:
        trial = repository.get_trial(session, sweep_id=sweep_id, number=number)
        return TrialDetail.model_validate(trial)


@router.get(
    "/{sweep_id}/pareto",
    dependencies=_READ,
    response_model=ParetoFrontBody,
    summary="The current Pareto front",
)
async def get_pareto(sweep_id: SweepId, engine: EngineDep, cache: CacheDep) -> Response:
    """The trials on the Pareto front with their ratios and objective values (may be up to
    `BAI_SWEEP_READ_CACHE_TTL` seconds old)."""
    body = await cache.get_or_render(("pareto", sweep_id), lambda: _render_pareto(engine, sweep_id))
    return Response(body, media_type="application/json")
