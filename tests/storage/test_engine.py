"""Engine set-up: URL handling, caching, SQLite pragmas, timestamps."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import (
    InvalidArgumentError,
    create_engine_for,
    create_sweep,
    display_url,
    init_database,
    list_sweeps,
    normalize_url,
    session_scope,
)
from storage import engine as engine_module
from storage.models import Sweep


def test_normalize_url_picks_psycopg_and_rejects_other_databases() -> None:
    assert normalize_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    assert display_url("postgresql://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"
    with pytest.raises(InvalidArgumentError, match="unsupported database 'mysql'"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(InvalidArgumentError, match="invalid database URL"):
        normalize_url("no url at all")


def test_sqlite_engine_is_cached_creates_its_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bai.db"
    engine = init_database(f"sqlite:///{path}")
    assert path.exists()
    assert create_engine_for(f"sqlite:///{path}") is engine
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_in_memory_sqlite_keeps_one_database_across_sessions() -> None:
    engine = init_database("sqlite://")
    with session_scope(engine) as session:
        session.add(Sweep(name="m", spec={}, n_trials=1, study_name="memory-study"))
    with session_scope(engine, read_only=True) as session:
        assert session.query(Sweep).filter_by(study_name="memory-study").count() == 1


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    engine = init_database(f"sqlite:///{tmp_path / 'bai.db'}")
    with pytest.raises(Exception, match="timezone-aware"), session_scope(engine) as session:
        session.add(
            Sweep(name="n", spec={}, n_trials=1, study_name="s", created_at=datetime(2026, 1, 1))
        )


def test_a_forked_child_gets_its_own_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bai.db'}"
    engine = init_database(url)
    with session_scope(engine) as session:
        create_sweep(session, name="parent", spec={}, n_trials=1)
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if it got a fresh, working engine
        code = 1
        try:
            child_engine = create_engine_for(url)
            with session_scope(child_engine) as session:
                create_sweep(session, name="child", spec={}, n_trials=1)
            code = 0 if child_engine is not engine else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with session_scope(engine, read_only=True) as session:
        assert list_sweeps(session).total == 2


class _FakeLockedCursor:
    """A fake DB-API cursor whose first ``locked`` executes fail as SQLite's do."""

    def __init__(self, locked: int, message: str = "database is locked") -> None:
        self.locked, self.message, self.calls = locked, message, 0

    def execute(self, _statement: str) -> None:
        self.calls += 1
        if self.calls <= self.locked:
            raise sqlite3.OperationalError(self.message)


def test_wal_switch_is_retried_while_the_new_file_is_locked() -> None:
    # SQLite refuses the WAL switch at once, without its busy handler, when another process
    # holds a new file at that moment; the switch waits for the lock instead.
    cursor = _FakeLockedCursor(locked=2)
    engine_module._use_wal(cursor)
    assert cursor.calls == 3
    # Any other error is raised as it is.
    other = _FakeLockedCursor(locked=1, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        engine_module._use_wal(other)
    assert other.calls == 1
