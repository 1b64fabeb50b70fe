"""Database fixtures: every contract test runs on a SQLite file and on the real PostgreSQL.

The PostgreSQL server (127.0.0.1:5432, or ``BAI_SWEEP_TEST_POSTGRES_URL``) must be running:
if it is unreachable the ``postgres`` tests fail loudly, they never skip. Each test session
creates its own ``bai_test_<random>`` database and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from storage import create_engine_for, dispose_engines, init_database

POSTGRES_SERVER_URL = os.environ.get(
    "BAI_SWEEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_OUR_TABLES = (
    "bai_sweep_views, bai_pareto_members, bai_pareto_fronts, bai_trial_steps, bai_trials, "
    "bai_sweeps"
)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The maintenance database URL, after checking that the server answers."""
    try:
        with psycopg.connect(_libpq(POSTGRES_SERVER_URL), connect_timeout=5):
            return POSTGRES_SERVER_URL
    except psycopg.Error as exc:
        problem = str(exc).strip().replace("\n", " ")
    pytest.fail(
        f"PostgreSQL is unreachable at {POSTGRES_SERVER_URL}: {problem}. The postgres tests "
        "never skip: start the server (or deselect them with -m 'not postgres').",
        pytrace=False,
    )


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """Create an empty database ``bai_test_<random>``, yield its URL, then drop it."""
    name = f"bai_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with psycopg.connect(_libpq(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database shared by this test session."""
    with fresh_postgres_database(postgres_server_url) as url:
        init_database(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test."""
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database holding no sweeps."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'bai-sweep.db'}"
        init_database(url)
        return url
    url = request.getfixturevalue("postgres_database")
    with create_engine_for(url).begin() as connection:
        connection.execute(text(f"TRUNCATE {_OUR_TABLES} RESTART IDENTITY CASCADE"))
    return url


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The engine of :func:`database_url`."""
    return create_engine_for(database_url)


@pytest.fixture
def empty_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The URL of a database that was never migrated."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty' / 'bai-sweep.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url
