"""The API and several workers on the real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from service.settings import Settings
from service.worker import Worker
from storage import init_database
from tests.service.conftest import ModelRoot, live_server
from tests.storage.conftest import fresh_postgres_database, postgres_server_url  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def postgres_url(postgres_server_url: str) -> Iterator[str]:  # noqa: F811
    with fresh_postgres_database(postgres_server_url) as url:
        yield url


def test_api_and_workers_share_the_queue(
    postgres_url: str, service_settings: Callable[..., Settings], model_root: ModelRoot
) -> None:
    settings = service_settings(database_url=postgres_url)
    with live_server(settings) as base, httpx.Client(base_url=base) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        ids = [
            client.post("/sweeps", json=model_root.spec(name=f"pg-{i}")).json()["id"]
            for i in range(6)
        ]
        engine = init_database(postgres_url)
        ran: dict[str, str] = {}
        gate = threading.Barrier(3)

        def fake_run_sweep(**kwargs: Any) -> SimpleNamespace:
            """A fake runner: waits for the other workers, then succeeds."""
            lease = kwargs["lease"]
            ran[lease.sweep_id] = lease.worker_id
            gate.wait(timeout=30)
            return SimpleNamespace(status="succeeded", error=None)

        workers = [
            Worker(settings, engine, worker_id=f"pg-worker-{i}", run_sweep=fake_run_sweep)
            for i in range(3)
        ]
        threads = [threading.Thread(target=w.run, kwargs={"max_sweeps": 2}) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert sorted(ran) == sorted(ids)  # every sweep ran exactly once
        assert sorted(ran.values()).count("pg-worker-0") == 2  # all three worked concurrently
        for sweep_id in ids:
            detail = client.get(f"/sweeps/{sweep_id}").json()
            assert detail["status"] == "succeeded" and detail["attempts"] == 1
        page = client.get("/sweeps", params={"status": "succeeded", "limit": 4}).json()
        assert page["total"] == 6 and len(page["items"]) == 4
