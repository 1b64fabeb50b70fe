"""``bai-sweep db upgrade`` / ``bai-sweep db current``: the database schema."""

from __future__ import annotations

import typer

from service.cli._app import app, console, user_errors

db_app = typer.Typer(
    help="Migrate and inspect the database schema (Optuna's own tables are left alone).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")

_DB_OPTION = typer.Option(
    None, "--db", help="Database URL [default: BAI_SWEEP_DATABASE_URL or the SQLite file]."
)


def _database_url(db: str | None) -> str:
    from service.cli._service import load_settings

    return load_settings(database_url=db).resolved_database_url


@db_app.command()
def upgrade(db: str | None = _DB_OPTION) -> None:
    """Migrate the database to the schema of this version (creates it if needed)."""
    from storage import create_engine_for, display_url, upgrade_database

    url = _database_url(db)
    with user_errors():
        before, after = upgrade_database(create_engine_for(url))
        shown = display_url(url)
    if before == after:
        console.print(
            f"{shown}: already at revision {after} (head)", highlight=False, soft_wrap=True
        )
    else:
        console.print(
            f"{shown}: upgraded from {before or 'an empty schema'} to revision {after} (head)",
            highlight=False,
            soft_wrap=True,
        )


@db_app.command()
def current(db: str | None = _DB_OPTION) -> None:
    """Print the database's schema revision; exit 1 if it is not at head."""
    from storage import create_engine_for, current_revision, display_url, head_revision

    url = _database_url(db)
    with user_errors():
        revision = current_revision(create_engine_for(url))
        shown = display_url(url)
    head = head_revision()
    if revision == head:
        console.print(f"{shown}: revision {revision} (head)", highlight=False, soft_wrap=True)
        return
    console.print(
        f"{shown}: revision {revision or 'none'}, head is {head}: run `bai-sweep db upgrade`",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)
