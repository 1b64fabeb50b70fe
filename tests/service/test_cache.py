"""The read cache of ``GET /sweeps/{id}`` and ``/pareto``: TTL and invalidation on cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import httpx
import pytest

from service.cache import ResponseCache
from service.settings import Settings
from storage import init_database, replace_front, session_scope, upsert_trial
from tests.service.conftest import ModelRoot, live_server


def test_ttl_and_eviction() -> None:
    now = [100.0]
    cache = ResponseCache(ttl=1.0, max_entries=2, clock=lambda: now[0])
    renders: list[str] = []

    def get(kind: str, sweep_id: str, value: str) -> bytes:
        def render() -> bytes:
            renders.append(value)
            return value.encode()

        return anyio.run(cache.get_or_render, (kind, sweep_id), render)

    assert get("sweep", "a", "a1") == b"a1"
    assert get("sweep", "a", "a2") == b"a1"
    now[0] += 1.5
    assert get("sweep", "a", "a3") == b"a3"
    get("pareto", "a", "p")
    get("sweep", "b", "b")  # evicts the least recently used
    assert get("sweep", "a", "a4") == b"a4"
    cache.invalidate("a")
    assert get("sweep", "a", "a5") == b"a5"
    assert renders == ["a1", "a3", "p", "b", "a4", "a5"]

    def broken() -> bytes:
        raise ValueError("no such sweep")

    with pytest.raises(ValueError):
        anyio.run(cache.get_or_render, ("sweep", "c"), broken)
    assert get("sweep", "c", "c") == b"c"  # errors are not cached


def test_concurrent_misses_render_once_and_stale_bodies_cover_refreshes() -> None:
    now = [100.0]
    cache = ResponseCache(ttl=1.0, clock=lambda: now[0])
    release = threading.Event()
    renders: list[str] = []

    def slow(value: str) -> Callable[[], bytes]:
        def render() -> bytes:
            renders.append(value)
            release.wait(10)
            return value.encode()

        return render

    async def scenario() -> list[bytes]:
        results: list[bytes] = []

        async def get(value: str) -> None:
            results.append(await cache.get_or_render(("sweep", "a"), slow(value)))

        async with anyio.create_task_group() as group:
            for value in ("first", "second", "third"):
                group.start_soon(get, value)
            await anyio.sleep(0.2)
            release.set()
        now[0] += 2  # expired: the next request refreshes, a concurrent one gets the old body
        release.clear()
        async with anyio.create_task_group() as group:
            group.start_soon(get, "refresh")
            await anyio.sleep(0.2)
            results.append(await cache.get_or_render(("sweep", "a"), slow("unused")))
            release.set()
        results.append(await cache.get_or_render(("sweep", "a"), slow("unused")))
        return results

    results = anyio.run(scenario)
    assert renders == ["first", "refresh"]
    assert results == [b"first"] * 3 + [b"first", b"refresh", b"refresh"]


def test_invalidation_during_a_render_is_not_undone() -> None:
    cache = ResponseCache(ttl=60.0)

    def render_then_cancel() -> bytes:
        cache.invalidate("a")  # a cancel commits while the old state is being rendered
        return b"before cancel"

    assert anyio.run(cache.get_or_render, ("sweep", "a"), render_then_cancel) == b"before cancel"
    assert anyio.run(cache.get_or_render, ("sweep", "a"), lambda: b"after") == b"after"


def test_zero_ttl_never_caches() -> None:
    cache = ResponseCache(ttl=0)
    bodies = iter([b"1", b"2"])
    assert anyio.run(cache.get_or_render, ("sweep", "a"), lambda: next(bodies)) == b"1"
    assert anyio.run(cache.get_or_render, ("sweep", "a"), lambda: next(bodies)) == b"2"


def test_cached_reads_and_cancel_invalidation(
    service_settings: Callable[..., Settings], model_root: ModelRoot
) -> None:
    settings = service_settings(read_cache_ttl=600.0)
    with live_server(settings) as base, httpx.Client(base_url=base) as client:
        sweep_id = client.post("/sweeps", json=model_root.spec(name="cached")).json()["id"]
        assert client.get(f"/sweeps/{sweep_id}").json()["progress"]["running"] == 0
        assert client.get(f"/sweeps/{sweep_id}/pareto").json()["members"] == []
        engine = init_database(settings.resolved_database_url)
        with session_scope(engine) as session:  # a worker's writes, behind the API's back
            upsert_trial(session, sweep_id=sweep_id, number=0, weights=[0.5, 0.5], alpha=0.2)
            replace_front(
                session, sweep_id=sweep_id, members=[0], hypervolume=0.1, reference_point=[0, 0]
            )
        assert client.get(f"/sweeps/{sweep_id}").json()["progress"]["running"] == 0  # cached
        assert client.get(f"/sweeps/{sweep_id}/pareto").json()["members"] == []
        assert client.post(f"/sweeps/{sweep_id}/cancel").json()["status"] == "cancelled"
        detail = client.get(f"/sweeps/{sweep_id}").json()
        assert detail["status"] == "cancelled" and detail["progress"]["running"] == 1
        assert len(client.get(f"/sweeps/{sweep_id}/pareto").json()["members"]) == 1
        assert client.get("/sweeps/000000000000").status_code == 404
