"""A sweep's lease: the one owner of a claimed sweep's status.

Whoever runs a sweep (``bai-sweep worker``, ``bai-sweep run``) holds a :class:`SweepLease`.
Taking it claims the sweep; while it is held a background thread heart-beats the sweep and
learns of cancel requests and take-overs; the holder's own shutdown is a flag on it. The
runner only reads the lease (should it stop, and why). When the run ends, its holder settles
the lease with the run's :class:`RunEnd`: a terminal status is recorded, or the sweep is
handed back to the queue for a resume, or (lost) nothing is written. The heartbeat goes on
until then, so work done after the trials (exporting the front) is still covered.

No code outside this module moves a claimed sweep's status.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from sqlalchemy import Engine

from storage import repository
from storage.engine import session_scope
from storage.exceptions import ConflictError, NotFoundError, StorageError
from storage.models import Sweep, SweepStatus, utc_now

__all__ = ["LeaseState", "RunEnd", "SweepLease", "holder_alive"]

logger = logging.getLogger(__name__)


class LeaseState(enum.Enum):
    """Where a lease stands, as its holder sees it (later members win over earlier ones)."""

    #: Claimed and heart-beating: go on working.
    HELD = "held"
    #: The holder is shutting down: stop now, leave unfinished trials to a resume, hand back.
    STOPPING = "stopping"
    #: A user asked to cancel: stop now, then finish the sweep ``cancelled``.
    CANCELLING = "cancelling"
    #: Another worker holds the sweep now, or it was finished elsewhere: stop, write nothing.
    LOST = "lost"
    #: Handed back to the queue (settled).
    RELEASED = "released"
    #: A terminal status was recorded (settled).
    FINISHED = "finished"


class RunEnd(enum.StrEnum):
    """How a run on a lease ended; :meth:`SweepLease.settle` turns it into the sweep's status."""

    #: The budget is spent and at least one trial completed: ``succeeded``.
    SUCCEEDED = "succeeded"
    #: The run could not go on or nothing completed: ``failed`` (with an error).
    FAILED = "failed"
    #: Stopped on a user's cancel request: ``cancelled``.
    CANCELLED = "cancelled"
    #: Stopped because the holder shuts down: back to ``queued``, to be resumed.
    STOPPED = "stopped"
    #: The lease was lost mid-run: the sweep's status is somebody else's now.
    LOST = "lost"


_TERMINAL = {
    RunEnd.SUCCEEDED: SweepStatus.SUCCEEDED,
    RunEnd.FAILED: SweepStatus.FAILED,
    RunEnd.CANCELLED: SweepStatus.CANCELLED,
}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_alive(sweep: Sweep, *, stale_after: float) -> bool:
    """Whether the worker holding ``sweep`` may still be running it.

    A worker on this host (ids are ``host:pid:...``) is alive while its process exists; any
    other worker while its heartbeat is younger than ``stale_after`` seconds.
    """
    parts = (sweep.worker_id or "").split(":")
    if len(parts) >= 2 and parts[0] == socket.gethostname() and parts[1].isdigit():
        return _pid_alive(int(parts[1]))
    if sweep.heartbeat_at is None:
        return False
    return (utc_now() - sweep.heartbeat_at).total_seconds() < stale_after


class SweepLease:
    """The claim of one running sweep by one worker (see the module docstring).

    Use as a context manager: entering starts the heartbeat; leaving stops it and, if the
    holder did not settle, hands the sweep back (or fails it when an exception escapes).

    Args:
        engine: The sweeps database.
        sweep: The sweep as claimed (status ``running`` under ``worker_id``).
        worker_id: The claimant.
        heartbeat_interval: Seconds between heartbeats (and cancel checks).
        resumed: The claim resumes an earlier, unfinished run.
    """

    def __init__(
        self,
        engine: Engine,
        sweep: Sweep,
        worker_id: str,
        *,
        heartbeat_interval: float = 10.0,
        resumed: bool = False,
    ) -> None:
        self.engine = engine
        self.sweep = sweep
        self.worker_id = worker_id
        self.heartbeat_interval = heartbeat_interval
        self.resumed = resumed
        self._state = LeaseState.HELD
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # --- taking a lease -------------------------------------------------------------------

    @classmethod
    def _held(
        cls, engine: Engine, sweep: Sweep | None, worker_id: str, heartbeat_interval: float
    ) -> SweepLease | None:
        """The lease of a sweep a claim just returned (``None`` when nothing was claimed)."""
        if sweep is None:
            return None
        return cls(
            engine,
            sweep,
            worker_id,
            heartbeat_interval=heartbeat_interval,
            resumed=sweep.attempts > 1,
        )

    @classmethod
    def claim_next(
        cls, engine: Engine, *, worker_id: str, heartbeat_interval: float = 10.0
    ) -> SweepLease | None:
        """Claim the oldest queued sweep (``None`` if the queue is empty)."""
        with session_scope(engine) as session:
            sweep = repository.claim_next_sweep(session, worker_id=worker_id)
        return cls._held(engine, sweep, worker_id, heartbeat_interval)

    @classmethod
    def claim(
        cls, engine: Engine, *, sweep_id: str, worker_id: str, heartbeat_interval: float = 10.0
    ) -> SweepLease | None:
        """Claim queued sweep ``sweep_id`` (``None`` if it is not queued)."""
        with session_scope(engine) as session:
            sweep = repository.claim_sweep(session, sweep_id=sweep_id, worker_id=worker_id)
        return cls._held(engine, sweep, worker_id, heartbeat_interval)

    @classmethod
    def for_run(
        cls,
        engine: Engine,
        *,
        name: str,
        spec: Mapping[str, Any],
        n_trials: int,
        worker_id: str,
        holder_alive: Callable[[Sweep], bool],
        heartbeat_interval: float = 10.0,
        fresh: bool = False,
    ) -> SweepLease:
        """Claim the sweep a synchronous run should execute: resume or create.

        An unfinished sweep with the same name and the same spec is resumed (a run that was
        killed or lost its machine); one still held by a live worker (``holder_alive``) is
        refused. Otherwise, or with ``fresh``, a new sweep is created and claimed.

        Raises:
            ConflictError: The matching sweep is held by a live worker.
        """
        with session_scope(engine) as session:
            if not fresh:
                for status in (SweepStatus.RUNNING, SweepStatus.QUEUED):
                    candidates = repository.list_sweeps(
                        session, name=name, status=status, limit=repository.MAX_PAGE_SIZE
                    ).items
                    for sweep in candidates:
                        if sweep.spec != dict(spec):
                            continue
                        if status is SweepStatus.RUNNING:
                            if holder_alive(sweep):
                                raise ConflictError(
                                    f"sweep {sweep.id} ({name}) is being run by worker "
                                    f"{sweep.worker_id}; wait for it or pass --fresh"
                                )
                            repository.release_sweep(
                                session, sweep_id=sweep.id, worker_id=sweep.worker_id or ""
                            )
                        claimed = repository.claim_sweep(
                            session, sweep_id=sweep.id, worker_id=worker_id
                        )
                        if claimed is not None:
                            return cls(
                                engine,
                                claimed,
                                worker_id,
                                heartbeat_interval=heartbeat_interval,
                                resumed=True,
                            )
            created = repository.create_sweep(session, name=name, spec=spec, n_trials=n_trials)
            claimed = repository.claim_sweep(session, sweep_id=created.id, worker_id=worker_id)
        assert claimed is not None
        return cls(engine, claimed, worker_id, heartbeat_interval=heartbeat_interval)

    # --- while held ------------------------------------------------------------------------

    @property
    def sweep_id(self) -> str:
        """The leased sweep's id."""
        return self.sweep.id

    @property
    def state(self) -> LeaseState:
        """The lease's current state."""
        return self._state

    @property
    def lost(self) -> bool:
        """True once the sweep is another worker's (its status is no longer ours to write)."""
        return self._state is LeaseState.LOST

    @property
    def should_stop(self) -> bool:
        """True once the run must stop (shutdown, cancel request, lost claim)."""
        return self._state is not LeaseState.HELD

    def _raise_to(self, state: LeaseState) -> None:
        order = list(LeaseState)
        with self._lock:
            if order.index(state) > order.index(self._state):
                self._state = state

    def request_stop(self) -> None:
        """The holder shuts down: the run stops and the sweep is handed back (thread-safe)."""
        self._raise_to(LeaseState.STOPPING)

    def beat(self) -> LeaseState:
        """Heart-beat once and learn of cancel requests and take-overs.

        A database error is logged and changes nothing: the next beat tries again (the sweep
        is only re-queued by others once the heartbeat is older than their ``stale_after``).
        """
        try:
            with session_scope(self.engine) as session:
                result = repository.heartbeat(
                    session, sweep_id=self.sweep_id, worker_id=self.worker_id
                )
        except NotFoundError:
            self._raise_to(LeaseState.LOST)
        except StorageError as exc:
            logger.warning("heartbeat of sweep %s failed: %s", self.sweep_id, exc)
        else:
            if not result.owned:
                logger.warning(
                    "sweep %s is no longer held by %s (%s): stopping",
                    self.sweep_id,
                    self.worker_id,
                    result.status.value,
                )
                self._raise_to(LeaseState.LOST)
            elif result.cancel_requested:
                self._raise_to(LeaseState.CANCELLING)
        return self._state

    def _heartbeat_loop(self) -> None:
        while not self._done.wait(self.heartbeat_interval):
            self.beat()

    def start(self) -> SweepLease:
        """Start heart-beating (once); returns the lease."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._heartbeat_loop, name=f"lease-{self.sweep_id}", daemon=True
            )
            self._thread.start()
        return self

    def _stop_heartbeat(self) -> None:
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> SweepLease:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state in (LeaseState.RELEASED, LeaseState.FINISHED, LeaseState.LOST):
            self._stop_heartbeat()
            return
        if exc is not None and isinstance(exc, Exception):
            self.finish(SweepStatus.FAILED, f"worker error: {type(exc).__name__}: {exc}")
        else:
            self.hand_back()

    # --- settling ------------------------------------------------------------------------

    def settle(self, end: RunEnd, error: str | None = None) -> LeaseState:
        """Record how the run ended: finish, hand back, or (lost) nothing. Returns the state."""
        if end is RunEnd.LOST or self._state is LeaseState.LOST:
            self._stop_heartbeat()
            self._raise_to(LeaseState.LOST)
            return self._state
        if end is RunEnd.STOPPED:
            self.hand_back()
        else:
            self.finish(_TERMINAL[end], error)
        return self._state

    def finish(self, status: SweepStatus, error: str | None = None) -> bool:
        """Record a terminal status; False (and state ``LOST``) if the sweep is not ours."""
        self._stop_heartbeat()
        try:
            with session_scope(self.engine) as session:
                repository.finish_sweep(
                    session,
                    sweep_id=self.sweep_id,
                    status=status,
                    error=error,
                    worker_id=self.worker_id,
                )
        except ConflictError as exc:
            logger.warning("sweep %s could not be finished: %s", self.sweep_id, exc)
            self._raise_to(LeaseState.LOST)
            return False
        self._raise_to(LeaseState.FINISHED)
        return True

    def hand_back(self) -> bool:
        """Re-queue the sweep for a later resume; False (state ``LOST``) if it is not ours."""
        self._stop_heartbeat()
        with session_scope(self.engine) as session:
            released = repository.release_sweep(
                session, sweep_id=self.sweep_id, worker_id=self.worker_id
            )
        self._raise_to(LeaseState.RELEASED if released else LeaseState.LOST)
        if released:
            logger.info("sweep %s handed back to the queue", self.sweep_id)
        return released
