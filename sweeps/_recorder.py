"""The recorder: the only code that writes a sweep's trials, steps and Pareto front.

Writes go through a bounded buffer to one writer thread, in order. A write that fails because
the database is unreachable is retried (with backoff) until it succeeds or the outage lasted
``retry_for`` seconds; meanwhile the sweep goes on and new writes queue up (a full buffer
makes the producer wait rather than drop anything). Every write is idempotent (upserts keyed
by trial number and step; the front is recomputed from the stored trials), so a write retried
after a lost acknowledgement does no harm. Consecutive front updates are coalesced.

The same thread runs best-effort jobs in order with the writes (:meth:`Recorder.attach`: a
trial's curve artifact), so that they cost the driver nothing; a failing one is logged, never
fatal.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage import repository
from storage.engine import session_scope
from storage.exceptions import DatabaseUnavailableError, StorageError
from storage.models import TrialState

logger = logging.getLogger(__name__)

#: Writes the buffer holds before producers wait.
MAX_PENDING = 10_000
#: How long one write is retried through a database outage (seconds).
RETRY_SECONDS = 900.0


@dataclass(frozen=True)
class _Write:
    kind: str
    apply: Callable[[Session], Any] | None = None
    #: A best-effort job instead (no session of ours; a failure is only logged).
    job: Callable[[], Any] | None = None


class RecorderError(RuntimeError):
    """A write could not be made within the retry window; the run must not go on."""


class Recorder:
    """Buffered, retried, idempotent writes of one sweep's results (see the module docstring).

    Args:
        engine: The sweeps database.
        sweep_id: The sweep written to.
        retry_for: Seconds a failing write is retried before the recorder gives up.
        max_pending: Bound of the write buffer.
        may_write: Asked before each write; once False (the lease was lost: the sweep is
            another worker's) pending and new writes are dropped.
    """

    def __init__(
        self,
        engine: Engine,
        sweep_id: str,
        *,
        retry_for: float = RETRY_SECONDS,
        max_pending: int = MAX_PENDING,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine = engine
        self.sweep_id = sweep_id
        self.retry_for = retry_for
        self.max_pending = max_pending
        self.may_write = may_write
        #: Hypervolume of the front last written.
        self.hypervolume: float | None = None
        #: Set when a write failed for good; further writes are refused.
        self.error: RecorderError | None = None
        self._pending: collections.deque[_Write] = collections.deque()
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._drain, name=f"recorder-{sweep_id}", daemon=True
        )
        self._thread.start()

    # --- what the run records -----------------------------------------------------------

    def trial_started(
        self,
        number: int,
        *,
        weights: Sequence[float],
        alpha: float,
        seed_kind: str | None,
        started_at: datetime,
        node: str | None = None,
        fidelity: Mapping[str, Any] | None = None,
    ) -> None:
        """A trial began (state ``running``)."""
        self._submit(
            _Write(
                "trial",
                lambda session: repository.upsert_trial(
                    session,
                    sweep_id=self.sweep_id,
                    number=number,
                    weights=weights,
                    alpha=alpha,
                    state=TrialState.RUNNING,
                    seed_kind=seed_kind,
                    started_at=started_at,
                    node=node,
                    fidelity=fidelity,
                ),
            )
        )

    def steps(self, number: int, steps: Sequence[Mapping[str, Any]]) -> None:
        """Probe steps of a running trial."""
        rows = [dict(step) for step in steps]
        self._submit(
            _Write(
                "steps",
                lambda session: repository.record_steps(
                    session, sweep_id=self.sweep_id, trial_number=number, steps=rows
                ),
            )
        )

    def trial_finished(self, number: int, **fields: Any) -> None:
        """A trial's final row (``upsert_trial`` fields), then the front recomputed."""
        self._submit(
            _Write(
                "trial",
                lambda session: repository.upsert_trial(
                    session, sweep_id=self.sweep_id, number=number, **fields
                ),
            )
        )
        self.update_front()

    def update_front(self) -> None:
        """Recompute and store the Pareto front from the stored complete trials."""
        self._submit(_Write("front", self._write_front))

    def actor_path(self, number: int, path: str) -> None:
        """Where the merged actor of front member ``number`` was exported."""

        def write(session: Session) -> None:
            trial = repository.get_trial(session, sweep_id=self.sweep_id, number=number)
            repository.upsert_trial(
                session,
                sweep_id=self.sweep_id,
                number=number,
                weights=trial.weights,
                alpha=trial.alpha,
                state=trial.state,
                actor_path=path,
            )

        self._submit(_Write("trial", write))

    def attach(self, kind: str, job: Callable[[], Any]) -> None:
        """Run ``job`` in the writer thread after the writes submitted so far (best effort).

        For work the driver should not wait for, such as rendering and uploading a finished
        trial's curve artifact. A job that raises is logged and skipped.
        """
        self._submit(_Write(kind, job=job))

    def repair(self, rows: Sequence[Mapping[str, Any]], *, interrupted_error: str) -> None:
        """Make our rows agree with the study before a run.

        Args:
            rows: Every finished Optuna trial as ``upsert_trial`` fields
                (:func:`sweeps._study.finished_rows`): a missing or still ``running`` row is
                written from it (a kill between Optuna's tell and our write).
            interrupted_error: Error of rows still ``running`` after that (orphans).
        """

        def write(session: Session) -> None:
            stored = {
                t.number: t.state
                for t in repository.list_trials(
                    session, sweep_id=self.sweep_id, limit=repository.MAX_PAGE_SIZE
                ).items
            }
            for row in rows:
                if stored.get(row["number"], TrialState.RUNNING) is TrialState.RUNNING:
                    repository.upsert_trial(session, sweep_id=self.sweep_id, **row)
            repository.fail_running_trials(session, sweep_id=self.sweep_id, error=interrupted_error)

        self._submit(_Write("trial", write))
        self.update_front()
        self.flush()

    # --- the buffer ---------------------------------------------------------------------

    def _write_front(self, session: Session) -> None:
        from sweeps.results import update_front

        self.hypervolume = update_front(session, sweep_id=self.sweep_id).hypervolume

    def _submit(self, write: _Write) -> None:
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closed:
                raise RecorderError(f"the recorder of sweep {self.sweep_id} is closed")
            if write.kind == "front" and self._pending and self._pending[-1].kind == "front":
                return
            while len(self._pending) >= self.max_pending and self.error is None:
                self._cond.wait(1.0)
            self._pending.append(write)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every buffered write is stored.

        Raises:
            RecorderError: A write failed for good, or ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._busy) and self.error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise RecorderError(
                        f"{len(self._pending)} writes of sweep {self.sweep_id} still pending"
                    )
                self._cond.wait(1.0 if left is None else min(left, 1.0))
            if self.error is not None:
                raise self.error

    def close(self) -> None:
        """Flush, then stop the writer thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                write = self._pending[0]
                self._busy = True
            failure = self._apply(write)
            with self._cond:
                self._busy = False
                if failure is not None:
                    self.error = failure
                    self._pending.clear()
                else:
                    self._pending.popleft()
                self._cond.notify_all()

    def _apply(self, write: _Write) -> RecorderError | None:
        if write.job is not None:
            if self.may_write():
                try:
                    write.job()
                except Exception:
                    logger.exception("sweep %s: %s failed (skipped)", self.sweep_id, write.kind)
            return None
        assert write.apply is not None
        started = time.monotonic()
        delay = 0.5
        while True:
            if not self.may_write():
                logger.warning("sweep %s is another's: %s dropped", self.sweep_id, write.kind)
                return None
            try:
                with session_scope(self.engine) as session:
                    write.apply(session)
                return None
            except DatabaseUnavailableError as exc:
                if time.monotonic() - started >= self.retry_for:
                    return RecorderError(
                        f"the database stayed unavailable for {self.retry_for:g} s: {exc}"
                    )
                logger.warning(
                    "sweep %s: %s write waits for the database: %s", self.sweep_id, write.kind, exc
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except StorageError as exc:
                return RecorderError(f"writing {write.kind} of sweep {self.sweep_id}: {exc}")
