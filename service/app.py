"""The FastAPI application: ``create_app()`` wires settings, database, routes and errors."""

from __future__ import annotations

from importlib.metadata import version as package_version

from fastapi import FastAPI

from service.auth import RequestGuard
from service.cache import ResponseCache
from service.errors import install_error_handlers
from service.hot_reads import HotReads
from service.routes import health, reports, sweeps
from service.settings import Settings, get_settings
from storage.engine import create_engine_for

DESCRIPTION = """\
Sweep **Balanced Actor Initialization** (BAI) merge ratios before RLHF.

`POST /sweeps` validates a sweep spec and queues it; a worker (`bai-sweep worker`) runs it:
each trial merges the base and SFT models with ratios `(w, alpha)`, runs a short PPO probe and
the benchmarks, and the Pareto front of the objectives is kept up to date. Poll
`GET /sweeps/{id}`, read the trials and the front, or open the HTML report.

Mutating endpoints need `Authorization: Bearer <BAI_SWEEP_API_TOKEN>` when a token is
configured (reads too with `BAI_SWEEP_READ_TOKEN_REQUIRED`). Errors are JSON
`{"detail": "..."}`: 4xx for anything the caller got wrong.
"""

TAGS = [
    {"name": "sweeps", "description": "Launch, inspect and cancel sweeps."},
    {"name": "reports", "description": "Human-readable sweep reports with plots."},
    {"name": "health", "description": "Liveness and database checks."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the REST API.

    Args:
        settings: Default: the process settings from the environment. The database schema
            must already be migrated (``bai-sweep serve`` and ``bai-sweep db upgrade`` do it).
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="bai-sweep",
        version=package_version("bai-sweep"),
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.settings = settings
    app.state.engine = create_engine_for(settings.resolved_database_url)
    app.state.response_cache = ResponseCache(settings.read_cache_ttl)
    install_error_handlers(app)
    app.include_router(sweeps.router)
    app.include_router(reports.router)
    app.include_router(health.router)
    # The last added runs first: authentication, then the stored hot reads, then the routes.
    app.add_middleware(HotReads, engine=app.state.engine, cache=app.state.response_cache)
    app.add_middleware(RequestGuard, settings=settings)
    return app
