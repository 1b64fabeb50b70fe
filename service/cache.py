"""A short-lived in-process cache of hot read responses (``GET /sweeps/{id}``, ``/pareto``).

Dashboards and CI jobs poll the same few sweeps many times a second; serving each sweep's
rendered JSON for up to ``read_cache_ttl`` seconds (default 1 s) turns those polls into a dict
lookup that never leaves the event loop. When an entry expires, one request re-renders it in a
worker thread while concurrent requests for it get the previous body (so they neither wait nor
pile up renders); without a previous body they wait for that one render. A cancel through this
process drops the sweep's entries at once; other processes see changes within about the TTL.
``BAI_SWEEP_READ_CACHE_TTL=0`` turns it off.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

#: Entries kept at most (least recently used dropped first).
MAX_ENTRIES = 4096
#: Renders running at once. A render is mostly Python under the GIL: dozens of concurrent
#: renders in anyio's default pool of 40 threads only take turns on the GIL and stretch every
#: request's latency, while a short queue serves them in order; two keep one rendering while
#: the other waits on the database.
RENDER_THREADS = 2

#: ``(kind, sweep_id)``, e.g. ``("pareto", "3f9c2a7b1d04")``.
CacheKey = tuple[str, str]


@dataclass
class _Render:
    """A render in flight: followers wait on ``done``."""

    done: anyio.Event = field(default_factory=anyio.Event)
    body: bytes | None = None


class ResponseCache:
    """Rendered response bodies by key, each fresh for ``ttl`` seconds.

    Used from the event loop (``get_or_render``) and any thread (``invalidate``).
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, bytes]] = OrderedDict()
        self._renders: dict[CacheKey, _Render] = {}
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(RENDER_THREADS)

    def _lookup(self, key: CacheKey) -> tuple[bytes | None, bool]:
        """``(body, fresh)`` of the entry for ``key`` (``(None, False)`` without one)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None, False
            self._entries.move_to_end(key)
            return entry[1], entry[0] > self._clock()

    def _store(self, key: CacheKey, body: bytes, rendered_at: float, generation: int) -> None:
        with self._lock:
            if self._generations.get(key[1], 0) != generation:
                return  # invalidated while rendering: the body may predate the change
            self._entries[key] = (rendered_at + self.ttl, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def get_or_render(self, key: CacheKey, render: Callable[[], bytes]) -> bytes:
        """The body for ``key``: cached if fresh, else ``render()`` run in a worker thread
        (errors propagate and are not cached)."""
        if self.ttl <= 0:
            return await anyio.to_thread.run_sync(render, limiter=self._limiter)
        body, fresh = self._lookup(key)
        if fresh and body is not None:
            return body
        pending = self._renders.get(key)
        if pending is not None:
            if body is not None:
                return body  # stale by at most one render
            await pending.done.wait()
            if pending.body is not None:
                return pending.body
            # The render failed: fail likewise.
            return await anyio.to_thread.run_sync(render, limiter=self._limiter)
        pending = self._renders[key] = _Render()
        try:
            with self._lock:
                generation = self._generations.get(key[1], 0)
            rendered_at = self._clock()
            pending.body = await anyio.to_thread.run_sync(render, limiter=self._limiter)
            self._store(key, pending.body, rendered_at, generation)
            return pending.body
        finally:
            del self._renders[key]
            pending.done.set()

    def invalidate(self, sweep_id: str) -> None:
        """Drop every entry of ``sweep_id`` (and any render of it already in flight)."""
        with self._lock:
            self._generations[sweep_id] = self._generations.get(sweep_id, 0) + 1
            for key in [key for key in self._entries if key[1] == sweep_id]:
                del self._entries[key]
