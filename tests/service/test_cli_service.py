"""``bai-sweep serve`` / ``worker`` / ``dashboard``: start-up checks and a live ``serve``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.service.conftest import TOKEN, free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BAI_SWEEP_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "BAI_SWEEP_HOST",
        "BAI_SWEEP_API_TOKEN",
        "BAI_SWEEP_API_WORKERS",
        "BAI_SWEEP_DATABASE_URL",
        "RAY_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.mark.parametrize("command", ["serve", "serve --no-worker"])
@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.org"])
def test_serve_refuses_public_host_without_token(env: dict, command: str, host: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--host", host])
    assert result.exit_code == 2
    assert "without an API token" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one message, no traceback
    assert "Traceback" not in result.output


def test_serve_refuses_public_host_from_environment(
    env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAI_SWEEP_HOST", "0.0.0.0")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "without an API token" in result.output


@pytest.mark.parametrize("args", [["worker"], ["dashboard"], ["serve"]])
def test_unsafe_settings_fail_every_command(
    env: dict, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("BAI_SWEEP_API_TOKEN", "short")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "at least 16 characters" in result.output


@pytest.mark.parametrize("api_workers", ["1", "2"])
def test_serve_without_worker_answers_and_stops_on_sigterm(
    env: dict, tmp_path: Path, api_workers: str
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--no-worker", "--port", str(port)],
        env={**env, "BAI_SWEEP_API_TOKEN": TOKEN, "BAI_SWEEP_API_WORKERS": api_workers},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/sweeps").status_code == 200
        assert httpx.post(f"{base}/sweeps", json={}).status_code == 401
        assert (tmp_path / "data" / "bai-sweep.db").exists()  # embedded SQLite, migrated
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    assert "token required" in output


def test_serve_runs_a_worker_and_stops_it(env: dict) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        time.sleep(2)  # let the worker reach its polling loop
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output
    worker_pid = int(re.search(r"worker pid (\d+)", output).group(1))
    assert re.search(r"worker \S+ stopped after 0 sweep\(s\)", output), output
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)  # stopped and reaped
