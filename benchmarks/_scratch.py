"""A scratch PostgreSQL database for one benchmark run (created on the server, dropped after).

Imported by the benchmarks that measure on PostgreSQL (``api_load.py``, ``storage_speed.py``);
each puts the repository on ``sys.path`` first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from storage import dispose_engines


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """The URL of a new database ``bai_bench_<random>`` on ``server_url``'s server."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"bai_bench_{uuid.uuid4().hex[:10]}"
    libpq = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
