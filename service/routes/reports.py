"""``GET /sweeps/{id}/report``: the sweep report as one HTML page (plots inlined)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from service.auth import require_read_access
from service.deps import EngineDep
from service.routes.sweeps import SweepId
from service.schemas import ErrorBody
from storage.engine import session_scope

router = APIRouter(
    prefix="/sweeps",
    tags=["reports"],
    dependencies=[Depends(require_read_access)],
    responses={
        401: {"model": ErrorBody, "description": "Missing bearer token"},
        403: {"model": ErrorBody, "description": "Invalid bearer token"},
        404: {"model": ErrorBody, "description": "No such sweep"},
        422: {"model": ErrorBody, "description": "Invalid request"},
    },
)


@router.get(
    "/{sweep_id}/report",
    response_class=HTMLResponse,
    summary="HTML report: Pareto plot, hypervolume, probe curves and the front table",
    responses={200: {"content": {"text/html": {}}, "description": "A self-contained page"}},
)
def get_report(sweep_id: SweepId, engine: EngineDep) -> HTMLResponse:
    """The sweep's report as it stands (also while it runs); the PNG figures are inlined as
    data URIs, so the page has no other resources to fetch."""
    # Imported here: the report pulls in matplotlib, which the rest of the API never needs.
    from sweeps.reports import build_report
    from sweeps.results import load_report_data

    with session_scope(engine, read_only=True) as session:
        data = load_report_data(session, sweep_id=sweep_id)
    return HTMLResponse(build_report(data).to_html())
