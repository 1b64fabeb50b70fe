"""Authentication before the body is read, the body-size limit, and a light API import."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.service.conftest import TOKEN, ModelRoot, free_port, live_server

REPO = Path(__file__).resolve().parents[2]
LIMIT = 4096


@pytest.fixture(scope="module")
def limited_api(service_settings: Callable[..., Settings]) -> Iterator[httpx.Client]:
    """A live API with a token and a 4 KiB body limit; the client sends the token."""
    settings = service_settings(api_token=TOKEN, max_body_bytes=LIMIT)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with live_server(settings) as base, httpx.Client(base_url=base, headers=headers) as client:
        yield client


def test_declared_oversized_body_is_413(limited_api: httpx.Client) -> None:
    response = limited_api.post("/sweeps", content=b"{" + b" " * LIMIT + b"}")
    assert response.status_code == 413
    assert "larger than 4096 bytes" in response.json()["detail"]


def test_streamed_oversized_body_is_413(limited_api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(16):
            yield b" " * 1024

    response = limited_api.post(
        "/sweeps", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_body_within_limit_reaches_the_route(
    limited_api: httpx.Client, model_root: ModelRoot
) -> None:
    body = json.dumps(model_root.spec()).encode()
    assert len(body) < LIMIT
    response = limited_api.post("/sweeps", content=body, headers={"Content-Type": "text/json"})
    assert response.status_code in (202, 422), response.text
    response = limited_api.post("/sweeps", json=model_root.spec())
    assert response.status_code == 202, response.text


def test_token_is_checked_before_the_body(
    service_settings: Callable[..., Settings], model_root: ModelRoot
) -> None:
    with live_server(service_settings(api_token=TOKEN)) as base, httpx.Client() as client:
        malformed = client.post(f"{base}/sweeps", content=b"{not json")
        assert malformed.status_code == 401  # not 422: the body was never parsed
        wrong = client.post(
            f"{base}/sweeps", json=model_root.spec(), headers={"Authorization": "Bearer x"}
        )
        assert wrong.status_code == 403
        assert client.get(f"{base}/sweeps").status_code == 200  # reads stay open


_SERVER = """
import sys
import uvicorn
from service.app import create_app
from service.settings import Settings
from storage import init_database

settings = Settings(data_dir=sys.argv[1], api_token=sys.argv[2], port=int(sys.argv[3]))
init_database(settings.resolved_database_url)
uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _upload_without_token(port: int, size: int) -> bytes:
    """Send ``size`` bytes of body without a token until the server answers; its answer."""
    head = (
        f"POST /sweeps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    chunk = b" " * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return sock.recv(65536)


def test_server_memory_stays_flat_under_a_large_unauthenticated_upload(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(tmp_path), TOKEN, str(port)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        before = _rss_kib(server.pid)
        answer = _upload_without_token(port, 100 * (1 << 20))
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        growth_mib = (_rss_kib(server.pid) - before) / 1024
        assert growth_mib < 16, f"server RSS grew by {growth_mib:.1f} MiB"
    finally:
        server.terminate()
        server.wait(10)


def test_importing_the_app_is_light_and_changes_no_environment() -> None:
    code = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import service.app\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.pop("TRANSFORMERS_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert imported.isdisjoint({"torch", "transformers", "lm_eval", "datasets", "ray"}), sorted(
        imported & {"torch", "transformers", "lm_eval", "datasets", "ray"}
    )
