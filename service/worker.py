"""The worker loop: take sweeps from the database queue and run them.

Each iteration re-queues sweeps whose worker stopped heart-beating (they are resumed from
their Optuna study by whoever claims them next), takes a :class:`storage.SweepLease` on the
oldest queued sweep and hands it to :func:`sweeps.runner.run_sweep`; the lease heart-beats
the sweep, learns of cancel requests, and records how the run ended. Several workers share
one queue (PostgreSQL: ``FOR UPDATE SKIP LOCKED``).

Stopping: the first SIGTERM / SIGINT stops claiming and asks the running sweep to stop; the
sweep is then handed back to the queue for another worker to resume.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from service.settings import Settings
from storage import repository
from storage.engine import session_scope
from storage.exceptions import DatabaseUnavailableError
from storage.lease import RunEnd, SweepLease

logger = logging.getLogger(__name__)


def default_worker_id() -> str:
    """``host:pid:random`` — unique per process, readable in the sweeps table."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _real_run_sweep() -> Callable[..., Any]:
    from sweeps.runner import run_sweep  # imports Ray: only in the worker process

    return run_sweep


class Worker:
    """Claims and runs sweeps until told to stop.

    Args:
        settings: Database, data directory, Ray address and the timing settings.
        engine: The database engine (schema migrated).
        worker_id: Default :func:`default_worker_id`.
        run_sweep: Default :func:`sweeps.runner.run_sweep`.
        run_options: Extra keyword arguments for ``run_sweep``.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        worker_id: str | None = None,
        run_sweep: Callable[..., Any] | None = None,
        run_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.worker_id = worker_id or default_worker_id()
        self._run_sweep = run_sweep
        self._run_options = dict(run_options or {})
        self.stop_event = threading.Event()
        self.current: SweepLease | None = None
        self._signals_installed = False

    @property
    def current_sweep(self) -> str | None:
        """The id of the sweep being run, if any."""
        return self.current.sweep_id if self.current is not None else None

    def stop(self) -> None:
        """Stop claiming; the running sweep (if any) stops and is handed back."""
        self.stop_event.set()
        current = self.current
        if current is not None:
            current.request_stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        logger.warning(
            "worker %s: %s received, stopping after handing back its sweep",
            self.worker_id,
            signal.Signals(signum).name,
        )
        self.stop()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the worker gracefully (call from the main thread)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._signals_installed = True

    def reclaim_stale(self) -> repository.ReclaimResult:
        """Re-queue the sweeps of workers that stopped heart-beating."""
        with session_scope(self.engine) as session:
            result = repository.reclaim_stale_sweeps(
                session,
                stale_after=timedelta(seconds=self.settings.stale_after),
                max_attempts=self.settings.max_attempts,
            )
        for sweep_id in result.requeued:
            logger.warning("sweep %s lost its worker: re-queued to resume", sweep_id)
        for sweep_id in result.failed:
            logger.error("sweep %s lost its worker too often: failed", sweep_id)
        return result

    def claim(self) -> SweepLease | None:
        """Take a lease on the oldest queued sweep, or return ``None``."""
        return SweepLease.claim_next(
            self.engine,
            worker_id=self.worker_id,
            heartbeat_interval=self.settings.heartbeat_interval,
        )

    def run_one(self) -> str | None:
        """Reclaim stale sweeps, claim one and run it to its end.

        Returns:
            The id of the sweep run, or ``None`` if the queue was empty.
        """
        self.reclaim_stale()
        if self.stop_event.is_set():
            return None
        lease = self.claim()
        if lease is None:
            return None
        resume = " (resuming)" if lease.resumed else ""
        logger.info("worker %s runs sweep %s%s", self.worker_id, lease.sweep_id, resume)
        self.current = lease
        try:
            with lease:
                if self.stop_event.is_set():  # stopped while claiming: hand it straight back
                    lease.hand_back()
                else:
                    self._execute(lease)
        finally:
            self.current = None
        return lease.sweep_id

    def _execute(self, lease: SweepLease) -> None:
        # The sweep runs in its own thread so that the main thread keeps our signal handlers:
        # ray.init() in the main thread would replace SIGTERM's by one that exits at once.
        results: dict[str, Any] = {}
        thread = threading.Thread(
            target=self._run_in_thread, args=(lease, results), name=f"sweep-{lease.sweep_id}"
        )
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
            if self._signals_installed:
                # Ray's core worker installs a C-level SIGTERM handler that kills the process
                # outright; take the signals back while the sweep runs.
                self.install_signal_handlers()
        error = results.get("error")
        if error is not None:  # the runner turns the failures it expects into an outcome
            logger.error("sweep %s crashed", lease.sweep_id, exc_info=error)
            lease.settle(RunEnd.FAILED, f"worker error: {type(error).__name__}: {error}")
            return
        outcome = results["outcome"]
        state = lease.settle(RunEnd(outcome.status), outcome.error)
        logger.info("sweep %s ended: %s (lease %s)", lease.sweep_id, outcome.status, state.value)

    def _run_in_thread(self, lease: SweepLease, results: dict[str, Any]) -> None:
        run_sweep = self._run_sweep or _real_run_sweep()
        try:
            results["outcome"] = run_sweep(
                lease=lease,
                data_dir=self.settings.data_dir,
                ray_address=self.settings.ray_address,
                trust_remote_code=self.settings.trust_remote_code,
                **self._run_options,
            )
        except Exception as exc:
            results["error"] = exc

    def run(self, *, max_sweeps: int | None = None, idle_exit: bool = False) -> int:
        """Loop until :meth:`stop` (or ``max_sweeps`` sweeps ran, or the queue is empty with
        ``idle_exit``).

        Returns:
            The number of sweeps run.
        """
        ran = 0
        while not self.stop_event.is_set():
            try:
                sweep_id = self.run_one()
            except DatabaseUnavailableError as exc:
                # A database restart or a network blip must not end the worker: retry.
                logger.warning("worker %s: %s; retrying", self.worker_id, exc)
                self.stop_event.wait(self.settings.worker_poll_interval)
                continue
            if sweep_id is not None:
                ran += 1
                if max_sweeps is not None and ran >= max_sweeps:
                    break
                continue
            if idle_exit:
                break
            self.stop_event.wait(self.settings.worker_poll_interval)
        return ran
