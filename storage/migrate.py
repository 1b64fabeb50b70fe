"""Alembic migrations of the ``bai_`` tables, run programmatically (no ``alembic.ini``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import create_engine_for, read_only_engine, translate_error
from storage.exceptions import MigrationError
from storage.models import TABLE_PREFIX

#: Our Alembic version table; Optuna keeps its own ``alembic_version`` in the same database.
VERSION_TABLE = f"{TABLE_PREFIX}alembic_version"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Serialises concurrent upgrades (API and workers starting together) on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6261695F7377  # "bai_sw"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic filter: reflect only our tables (Optuna's share the database)."""
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX)
    return True


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic filter: compare and migrate only our tables."""
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX)
    return True


def alembic_config(connection: Connection | None = None, url: str | URL | None = None) -> Config:
    """An Alembic config for our migrations, bound to an open connection (or a URL for ``--sql``).

    Developers create a new revision with
    ``alembic.command.revision(alembic_config(conn), message=..., autogenerate=True)``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this version of bai-sweep expects the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory has no revision"
    return head


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _driver(connection: Connection) -> Any:
    """The DB-API connection under ``connection`` (always there while it is open)."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise MigrationError("the database connection was closed during a migration")
    return driver


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # A table rebuild (batch migration) drops the old table, and with foreign keys on
            # SQLite would cascade that drop into the child rows. The pragma only takes effect
            # outside a transaction, so set it on the raw connection before SQLAlchemy begins.
            _driver(connection).execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MigrationError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                _driver(connection).execute("PRAGMA foreign_keys = ON")


def upgrade_database(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the ``bai_`` tables to ``revision`` in one transaction.

    Returns:
        The revisions before and after (``None`` before means an empty database).

    Raises:
        MigrationError: the database is at a revision this version does not know.
        StorageError: (a subclass of) if the database fails.
    """
    try:
        with _migration_connection(engine) as connection:
            before = _current(connection)
            command.upgrade(alembic_config(connection), revision)
            after = _current(connection)
    except CommandError as exc:
        raise MigrationError(f"cannot migrate the database: {exc}") from exc
    except SQLAlchemyError as exc:
        raise translate_error(exc, engine) from exc
    return before, after


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` if it was never migrated."""
    try:
        with read_only_engine(engine).connect() as connection:
            return _current(connection)
    except SQLAlchemyError as exc:
        raise translate_error(exc, engine) from exc


def init_database(url: str | URL) -> Engine:
    """The (cached) engine for ``url`` with the schema migrated to head.

    Safe to call from several processes at once and a no-op when already at head.
    """
    engine = create_engine_for(url)
    upgrade_database(engine)
    return engine
