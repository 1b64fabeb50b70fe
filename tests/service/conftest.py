"""Service fixtures: a model root with tiny checkpoints, and live uvicorn servers on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from storage import init_database
from tests.tiny_models import make_checkpoint, make_family, make_reward_model

TOKEN = "test-token-0123456789abcdef"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """On CI a browser test must run: a missing chromium fails it instead of skipping it."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if item.get_closest_marker("browser") and os.environ.get("CI") and not Path(chromium).exists():
        pytest.fail("CI: Debian's chromium is not installed (apt-get install -y chromium)")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """Serve ``create_app(settings)`` with uvicorn in a thread; yield its base URL."""
    init_database(settings.resolved_database_url)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(10)


class ModelRoot:
    """Paths of the test model root (and of things outside it)."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "models"
        self.outside = tmp / "outside"
        self.base, (self.sft_a, self.sft_b) = make_family(self.root, n_sft=2)
        self.reward = make_reward_model(self.root / "reward")
        self.prompts = self.root / "prompts.jsonl"
        self.prompts.write_text(
            "".join(
                json.dumps({"prompt": f"what is {i} plus {i}?", "answer": 2 * i}) + "\n"
                for i in range(8)
            )
        )
        # Same architecture, different width: the header-only pre-flight must refuse it.
        self.incompatible = make_checkpoint(self.root / "wide", seed=3, hidden_size=48)
        self.other_arch = make_checkpoint(self.root / "qwen", seed=5, arch="qwen2")
        self.foreign = make_checkpoint(self.outside / "secret-model", seed=4)
        (self.root / "escape").symlink_to(self.foreign, target_is_directory=True)

    def spec(self, **overrides: object) -> dict:
        """A valid tiny sweep spec over the root's checkpoints."""
        spec: dict = {
            "name": "svc-test",
            "models": {
                "base": str(self.base),
                "sft": [str(self.sft_a), str(self.sft_b)],
                "reward": str(self.reward),
                "prompts": str(self.prompts),
            },
            "search": {"n_trials": 6, "seed_points": "none"},
            "probe": {"steps": 2, "batch_size": 2, "response_length": 4, "repeats": 1},
            "benchmarks": {"limit": 2, "max_gen_toks": 16},
        }
        spec.update(overrides)
        return spec


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> ModelRoot:
    """Tiny checkpoints under one model root, plus a checkpoint outside it."""
    return ModelRoot(tmp_path_factory.mktemp("service-models"))


@pytest.fixture(scope="module")
def service_settings(
    tmp_path_factory: pytest.TempPathFactory, model_root: ModelRoot
) -> Callable[..., Settings]:
    """Build settings for a fresh data directory under the module's temporary directory."""

    def build(**overrides: object) -> Settings:
        data_dir = tmp_path_factory.mktemp("service-data")
        values: dict = {
            "data_dir": data_dir,
            "model_roots": [model_root.root],
            "port": free_port(),
            "worker_poll_interval": 0.2,
            "heartbeat_interval": 0.5,
            "stale_after": 5.0,
            "read_cache_ttl": 0.0,  # tests assert exact states; test_cache.py covers the cache
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture(scope="module")
def open_api(service_settings: Callable[..., Settings]) -> Iterator[httpx.Client]:
    """A client of a live API without a token (loopback), on its own empty database."""
    with live_server(service_settings()) as base, httpx.Client(base_url=base) as client:
        yield client


@pytest.fixture(scope="module")
def guarded_api(service_settings: Callable[..., Settings]) -> Iterator[httpx.Client]:
    """A client (no credentials) of a live API that requires a token for every endpoint."""
    settings = service_settings(api_token=TOKEN, read_token_required=True)
    with live_server(settings) as base, httpx.Client(base_url=base) as client:
        yield client
