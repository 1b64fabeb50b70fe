"""``bai-sweep db upgrade`` / ``db current`` on both backends."""

from __future__ import annotations

from typer.testing import CliRunner

from service.cli import app
from storage import head_revision

runner = CliRunner()


def test_db_upgrade_migrates_once_then_reports_head(empty_database_url: str) -> None:
    behind = runner.invoke(app, ["db", "current", "--db", empty_database_url])
    assert behind.exit_code == 1 and "run `bai-sweep db upgrade`" in behind.output

    first = runner.invoke(app, ["db", "upgrade", "--db", empty_database_url])
    assert first.exit_code == 0, first.output
    assert f"upgraded from an empty schema to revision {head_revision()}" in first.output

    second = runner.invoke(app, ["db", "upgrade", "--db", empty_database_url])
    assert second.exit_code == 0 and "already at revision" in second.output

    current = runner.invoke(app, ["db", "current", "--db", empty_database_url])
    assert current.exit_code == 0 and f"revision {head_revision()} (head)" in current.output


def test_db_upgrade_bad_urls_are_one_line_errors() -> None:
    for url, message in (
        ("mysql://user@host/db", "unsupported database 'mysql'"),
        ("not a url", "invalid database URL"),
        ("postgresql://postgres:secret@127.0.0.1:1/nope", "database unavailable"),
    ):
        result = runner.invoke(app, ["db", "upgrade", "--db", url])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output and "secret" not in result.output
