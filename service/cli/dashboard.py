"""``bai-sweep dashboard``: optuna-dashboard on the service's database and artifact store."""

from __future__ import annotations

import typer

from service.cli._app import app, console, err_console
from service.cli._service import load_settings
from service.settings import is_loopback


@app.command()
def dashboard(
    host: str | None = typer.Option(
        None, help="Address to listen on [default: BAI_SWEEP_DASHBOARD_HOST or 127.0.0.1]."
    ),
    port: int | None = typer.Option(
        None, help="Port to listen on [default: BAI_SWEEP_DASHBOARD_PORT or 8080]."
    ),
) -> None:
    """Serve optuna-dashboard on the sweeps' Optuna studies (one study per sweep)."""
    import optuna
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from storage.engine import display_url, normalize_url

    settings = load_settings(dashboard_host=host, dashboard_port=port)
    url = normalize_url(settings.resolved_database_url).render_as_string(hide_password=False)
    storage = optuna.storages.RDBStorage(url)
    settings.artifact_dir.mkdir(parents=True, exist_ok=True)
    artifact_store = FileSystemArtifactStore(str(settings.artifact_dir))
    if not is_loopback(settings.dashboard_host):
        err_console.print(
            f"[bold yellow]warning:[/] optuna-dashboard has no authentication and listens on "
            f"{settings.dashboard_host}; keep it behind a firewall or a reverse proxy.",
            highlight=False,
        )
    console.print(
        f"optuna-dashboard on http://{settings.dashboard_host}:{settings.dashboard_port} "
        f"(database {display_url(url)}, artifacts {settings.artifact_dir})",
        highlight=False,
    )
    optuna_dashboard.run_server(
        storage,
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        artifact_store=artifact_store,
    )
