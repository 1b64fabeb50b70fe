"""``bai-sweep serve``: the REST API, plus one worker process unless ``--no-worker``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import typer

from service.cli._app import app, console, user_errors
from service.cli._service import load_settings

#: Seconds the worker gets to stop at a trial boundary before it is killed.
WORKER_STOP_TIMEOUT = 60.0


@app.command()
def serve(
    host: str | None = typer.Option(
        None,
        help="Address to listen on [default: BAI_SWEEP_HOST or 127.0.0.1]; a non-loopback "
        "address needs BAI_SWEEP_API_TOKEN.",
    ),
    port: int | None = typer.Option(None, help="Port [default: BAI_SWEEP_PORT or 8000]."),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Also run one worker (in a child process)."
    ),
) -> None:
    """Serve the REST API (OpenAPI at /docs) and run one worker beside it."""
    import uvicorn

    from service.app import create_app
    from storage import display_url, init_database
    from sweeps._ray_mode import check_ray_address

    settings = load_settings(host=host, port=port)
    with user_errors():
        if worker:
            check_ray_address(settings.ray_address)
        init_database(settings.resolved_database_url)
        shown = display_url(settings.resolved_database_url)
    child = None
    if worker:
        # Its own process: the API process never starts Ray. Same process group, so a
        # terminal's Ctrl-C reaches both; the API also stops it on its way out.
        child = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=os.environ)
    auth = "token required" if settings.api_token else "no token (loopback only)"
    console.print(
        f"bai-sweep API on http://{settings.host}:{settings.port} ({auth}), database {shown}"
        + (f", worker pid {child.pid}" if child else ""),
        highlight=False,
    )
    # uvicorn shuts down gracefully on SIGTERM / SIGINT, then re-raises the signal to the
    # handlers it found: make those no-ops so that the worker is stopped below and we exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        if settings.api_workers == 1:
            app_or_factory: Any = create_app(settings)
        else:
            # Each process builds the app from the environment: the command-line overrides
            # (host and port) are uvicorn's own.
            app_or_factory = "service.app:create_app"
        uvicorn.run(
            app_or_factory,
            factory=settings.api_workers > 1,
            workers=settings.api_workers,
            host=settings.host,
            port=settings.port,
            log_level="info",
        )
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
