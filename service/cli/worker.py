"""``bai-sweep worker``: claim queued sweeps from the database and run them."""

from __future__ import annotations

import logging

import typer

from service.cli._app import app, console, user_errors
from service.cli._service import load_settings


@app.command()
def worker(
    once: bool = typer.Option(
        False, "--once", help="Run at most one queued sweep, then exit (cron, CI)."
    ),
    ray_address: str | None = typer.Option(
        None,
        help="Ray cluster to run trials on [default: BAI_SWEEP_RAY_ADDRESS / RAY_ADDRESS, "
        "else a local Ray instance].",
    ),
) -> None:
    """Run queued sweeps until stopped (SIGTERM / Ctrl-C stop it gracefully)."""
    from service.worker import Worker
    from storage import display_url, init_database
    from sweeps._ray_mode import check_ray_address

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(ray_address=ray_address)
    with user_errors():
        check_ray_address(settings.ray_address)
        engine = init_database(settings.resolved_database_url)
        shown = display_url(settings.resolved_database_url)
    runner = Worker(settings, engine)

    runner.install_signal_handlers()
    console.print(
        f"worker {runner.worker_id} on {shown} (Ray: {settings.ray_address or 'local'})",
        highlight=False,
    )
    ran = runner.run(max_sweeps=1 if once else None, idle_exit=once)
    console.print(f"worker {runner.worker_id} stopped after {ran} sweep(s)", highlight=False)
