"""The two polled reads, ``GET /sweeps/{id}`` and ``GET /sweeps/{id}/pareto``, served from
their stored bodies without the framework.

The writes render both bodies (:mod:`storage.views`), so answering a poll is one primary-key
read. Routing, parameter validation and dependency injection would cost several times that, so
:class:`HotReads` (pure ASGI, behind :class:`service.auth.RequestGuard`, which has already
authenticated the request) answers a well-formed ``GET`` of either path whose body is stored and
passes anything else to the application: ids the route would refuse, sweeps without stored
bodies (the route renders them) and database errors (the route reports them).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from service.cache import ResponseCache
from storage import views
from storage.exceptions import StorageError

#: The routes' paths with their ``SweepId`` constraints (1-32 of ``[A-Za-z0-9_-]``).
_PATH = re.compile(r"/sweeps/([A-Za-z0-9_-]{1,32})(/pareto)?")
#: Reads in flight at once on PostgreSQL (each mostly waits for its round trip).
READ_THREADS = 4
_HEADERS = [(b"content-type", b"application/json")]


class NotStoredError(Exception):
    """The sweep has no stored body of that kind (or does not exist)."""


def stored_body(engine: Engine, sweep_id: str, kind: str) -> bytes:
    """The stored body of ``kind`` (``"summary"`` or ``"pareto"``) of a sweep.

    Raises:
        NotStoredError: no such sweep, or no body stored for it.
        StorageError: the database failed.
    """
    body = views.read_stored(engine, sweep_id, kind)
    if body is None:
        raise NotStoredError(sweep_id)
    return body.encode()


class HotReads:
    """ASGI middleware: serve stored bodies of the two polled reads, else call the app.

    Without the read cache, a SQLite read runs on the event loop (a local read of a few
    microseconds costs less than a hop to a thread); a PostgreSQL read waits for its round trip
    in one of :data:`READ_THREADS` threads. With the cache, :class:`ResponseCache` reads.
    """

    def __init__(self, app: ASGIApp, engine: Engine, cache: ResponseCache) -> None:
        self.app = app
        self.engine = engine
        self.cache = cache
        self.executor = None
        if engine.dialect.name != "sqlite":
            self.executor = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="bai-hot-read")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        sweep_id, pareto = match.groups()
        kind = "pareto" if pareto else "summary"
        read = partial(stored_body, self.engine, sweep_id, kind)
        try:
            if self.cache.ttl > 0:
                body = await self.cache.get_or_render((kind, sweep_id), read)
            elif self.executor is None:
                body = read()
            else:
                body = await asyncio.get_running_loop().run_in_executor(self.executor, read)
        except (NotStoredError, StorageError):
            await self.app(scope, receive, send)
            return
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
