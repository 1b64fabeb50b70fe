"""Alembic environment: migrates only the ``bai_`` tables, never Optuna's.

Configured programmatically by :mod:`storage.migrate` (no ``alembic.ini``): the caller passes
an open connection in ``config.attributes["connection"]``, inside a transaction it owns.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from storage.migrate import VERSION_TABLE, include_name, include_object
from storage.models import Base

config = context.config


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        include_object=include_object,
        compare_type=True,
        render_as_batch=True,
        **kwargs,
    )


if context.is_offline_mode():
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through storage.migrate, which passes a connection")
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
