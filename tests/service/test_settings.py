"""Settings: environment variables, defaults and the start-up safety checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, is_loopback

TOKEN = "t" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name in ("RAY_ADDRESS", "BAI_SWEEP_RAY_ADDRESS", "BAI_SWEEP_HOST", "BAI_SWEEP_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_local_and_open() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.api_token is None
    assert settings.ray_address is None
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_model_roots == [Path(".bai-sweep").resolve()]


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BAI_SWEEP_HOST", "0.0.0.0")
    monkeypatch.setenv("BAI_SWEEP_PORT", "9001")
    monkeypatch.setenv("BAI_SWEEP_API_TOKEN", TOKEN)
    monkeypatch.setenv("BAI_SWEEP_MODEL_ROOTS", f"{tmp_path}/a, {tmp_path}/b")
    monkeypatch.setenv("BAI_SWEEP_WORKER_POLL_INTERVAL", "0.5")
    monkeypatch.setenv("BAI_SWEEP_DASHBOARD_PORT", "8123")
    settings = Settings()
    assert (settings.host, settings.port, settings.dashboard_port) == ("0.0.0.0", 9001, 8123)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert settings.resolved_model_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.worker_poll_interval == 0.5


def test_ray_address_also_read_from_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert Settings().ray_address == "ray://head:10001"
    monkeypatch.setenv("BAI_SWEEP_RAY_ADDRESS", "auto")
    assert Settings().ray_address == "auto"
    assert Settings(ray_address="10.0.0.1:6379").ray_address == "10.0.0.1:6379"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_refuses_non_loopback_host_without_token(host: str) -> None:
    with pytest.raises(ValidationError, match="without an API token"):
        Settings(host=host)
    assert Settings(host=host, api_token=TOKEN).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert Settings(host=host).api_token is None


def test_refuses_short_token() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(api_token="secret")


def test_empty_token_means_no_token() -> None:
    assert Settings(api_token="").api_token is None


def test_read_token_required_needs_a_token() -> None:
    with pytest.raises(ValidationError, match="READ_TOKEN_REQUIRED"):
        Settings(read_token_required=True)
    assert Settings(read_token_required=True, api_token=TOKEN).read_token_required


def test_stale_after_must_exceed_two_heartbeats() -> None:
    with pytest.raises(ValidationError, match="STALE_AFTER"):
        Settings(heartbeat_interval=30, stale_after=50)
    assert Settings(heartbeat_interval=1, stale_after=3).stale_after == 3


@pytest.mark.parametrize("field", ["port", "dashboard_port"])
def test_port_range(field: str) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: 70000})
