"""``GET /healthz``: the service is up and its database reachable and migrated."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import EngineDep
from service.schemas import Health
from storage.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])

_expected_revision = lru_cache(maxsize=1)(head_revision)


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness and database check",
    responses={503: {"model": Health, "description": "Database unreachable or not migrated"}},
)
def healthz(engine: EngineDep) -> Health | JSONResponse:
    """Report whether the database answers and its schema is at the expected revision."""
    expected = _expected_revision()
    revision = current_revision(engine)
    if revision == expected:
        return Health(status="ok", database="ok", schema_revision=revision)
    body = Health(
        status="unavailable",
        database=f"schema at {revision or 'no revision'}, expected {expected}: "
        "run `bai-sweep db upgrade`",
        schema_revision=revision,
    )
    return JSONResponse(status_code=503, content=body.model_dump())
