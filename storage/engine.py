"""Engines (one per URL, cached), the session scope, and database initialisation."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from storage.exceptions import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidArgumentError,
    StorageError,
)

#: How long a SQLite connection waits for another writer before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_hot_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and pick our drivers (``postgresql://`` means psycopg 3).

    Raises:
        InvalidArgumentError: the URL cannot be parsed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidArgumentError(f"invalid database URL {str(url)!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() in ("psycopg2", "psycopg"):
            return parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername == "postgresql":
            return parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise InvalidArgumentError(
        f"unsupported database {backend!r} in URL "
        f"{parsed.render_as_string(hide_password=True)!r}: use sqlite:/// or postgresql://"
    )


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    return normalize_url(url).render_as_string(hide_password=True)


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, waiting up to the busy timeout for the lock.

    The mode is stored in the file, so only the first connection to a new file switches it.
    The switch needs an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy handler, when another connection holds the file at that moment (seen when
    several processes open a new database together), so a locked switch is retried here.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _configure_sqlite(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN instead of the sqlite3 module,
        # which would otherwise open transactions lazily and always DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                _use_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE): a DEFERRED transaction that
        # reads and then writes fails at once with "database is locked" when another writer
        # committed in between, whereas IMMEDIATE waits for the busy timeout.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_engine_for(url: str | URL) -> Engine:
    """The engine for ``url``, created on first use and cached per URL in this process.

    SQLite: the parent directory of the file is created; connections use WAL mode, enforce
    foreign keys and wait up to 30 s for a busy database; transactions begin IMMEDIATE unless
    the session is read-only. PostgreSQL: psycopg 3 with pre-ping.

    Raises:
        InvalidArgumentError: the URL is invalid or names an unsupported database.
    """
    parsed = normalize_url(url)
    key = parsed.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        try:
            if parsed.get_backend_name() == "sqlite":
                memory = _is_sqlite_memory(parsed)
                if memory:
                    engine = create_engine(
                        parsed,
                        poolclass=StaticPool,
                        connect_args={"check_same_thread": False},
                    )
                else:
                    Path(parsed.database or "").expanduser().parent.mkdir(
                        parents=True, exist_ok=True
                    )
                    engine = create_engine(
                        parsed,
                        connect_args={
                            "check_same_thread": False,
                            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                        },
                    )
                _configure_sqlite(engine, memory=memory)
            else:
                engine = create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise InvalidArgumentError(
                f"cannot use database URL {display_url(parsed)!r}: {exc}"
            ) from None
        _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine's connections and forget the engines (tests, forks)."""
    with _engines_lock:
        engines = [*_engines.values(), *_hot_engines.values()]
        _engines.clear()
        _hot_engines.clear()
    for engine in engines:
        engine.dispose()


def _forget_engines_after_fork() -> None:
    # A forked child must not touch the parent's pooled connections: drop them unclosed
    # (closing would end the parent's sessions) and start with fresh engines.
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in [*_engines.values(), *_hot_engines.values()]:
        engine.dispose(close=False)
    _engines.clear()
    _hot_engines.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def translate_error(exc: SQLAlchemyError, engine: Engine | None = None) -> StorageError:
    """Map a SQLAlchemy error onto the storage error a caller can act on."""
    where = f" ({display_url(engine.url)})" if engine is not None else ""
    detail = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    detail = detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
    if isinstance(exc, IntegrityError):
        return ConflictError(f"conflicting change{where}: {detail}")
    lost_connection = isinstance(exc, DBAPIError) and exc.connection_invalidated
    if isinstance(exc, OperationalError | InterfaceError) or lost_connection:
        return DatabaseUnavailableError(f"database unavailable{where}: {detail}")
    return StorageError(f"database error{where}: {detail}")


def read_only_engine(engine: Engine) -> Engine:
    """A view of ``engine`` whose transactions are read-only (SQLite: DEFERRED)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="DEFERRED")
    return engine.execution_options(postgresql_readonly=True)


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception.

    Objects loaded in the scope stay readable after it ends (``expire_on_commit=False``);
    their relationships are not loaded unless a repository function says so.

    Args:
        engine: From :func:`create_engine_for` or :func:`init_database`.
        read_only: Promise not to write. SQLite then starts a DEFERRED transaction that never
            waits for writers; PostgreSQL runs it as a READ ONLY transaction.

    Raises:
        StorageError: (a subclass of) for every database error, rolled back.
    """
    bind = read_only_engine(engine) if read_only else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise translate_error(exc, engine) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def hot_read_engine(engine: Engine) -> Engine:
    """An engine for polled one-statement reads of ``engine``'s database, at the least cost
    per statement: on PostgreSQL a pool of its own in autocommit mode without pre-ping (the
    statement is the only round trip; a dropped connection fails once and is replaced), on
    SQLite ``engine`` itself (its connections run a lone statement in autocommit)."""
    if engine.dialect.name == "sqlite":
        return engine
    key = engine.url.render_as_string(hide_password=False)
    with _engines_lock:
        hot = _hot_engines.get(key)
        if hot is None:
            hot = _hot_engines[key] = create_engine(engine.url, isolation_level="AUTOCOMMIT")
        return hot
