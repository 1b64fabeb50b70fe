"""Ray Tune's ``OptunaSearch`` fixed for multi-objective sweeps on a persistent study.

The stock searcher tells Optuna ``COMPLETE`` with whatever the trial's last result holds:
a multi-objective trial whose last result misses an objective (a per-step report, an error,
a stop) is told ``COMPLETE`` with ``None`` values, Optuna refuses, the warning is swallowed
and the trial stays ``RUNNING`` in the database forever. Trials stopped by a scheduler are
told ``COMPLETE`` with their last values. This subclass decides the state itself:

- a result flagged :data:`FINAL_KEY` with every objective finite -> ``COMPLETE``;
- an error -> ``FAIL``; a final result with a missing or non-finite objective -> ``FAIL``;
- stopped before its final result (scheduler, stopper) -> ``PRUNED``;
- :meth:`BaiOptunaSearch.finish_unfinished` tells every trial still open after the Tuner
  returned (Tune's ``stop_all`` ends trials without telling the searcher).

Every Optuna storage call (ask, decorations, tell) is retried through a database outage of up
to :data:`STORAGE_RETRY_SECONDS`; a retried tell skips a trial the lost attempt already told.

Just before telling, a ``before_tell`` hook may decorate the still-running Optuna trial (user
attributes and artifacts can only be attached before a trial finishes).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch
from sqlalchemy.exc import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

#: Key of the trial's last report that carries the objective values.
FINAL_KEY = "final"
#: Key of the error message a failing trial reports before raising.
ERROR_KEY = "error"
#: Failure reason of an errored trial that reported no error message of its own.
GENERIC_ERROR = "the trial raised an error (see the Ray logs)"
#: Flattened result keys of the objectives are ``objectives/<name>``.
OBJECTIVE_PREFIX = "objectives/"
#: How long an Optuna storage call is retried while the database is unreachable (seconds).
STORAGE_RETRY_SECONDS = 900.0

T = TypeVar("T")


def retry_storage(call: Callable[[], T], what: str, *, retry_for: float | None = None) -> T:
    """Run ``call``, retrying it with backoff while the database is unreachable.

    Raises:
        The last storage error once ``retry_for`` (default :data:`STORAGE_RETRY_SECONDS`)
        seconds passed without success.
    """
    deadline = time.monotonic() + (STORAGE_RETRY_SECONDS if retry_for is None else retry_for)
    delay = 0.5
    while True:
        try:
            return call()
        except (StorageInternalError, OperationalError, InterfaceError) as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("%s: database unavailable (%s); retrying", what, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass(frozen=True)
class TrialVerdict:
    """How a finished Tune trial is told to Optuna."""

    state: TrialState
    values: list[float] | None
    reason: str | None


#: ``before_tell(tune_trial_id, optuna_trial, verdict, last_result)``.
BeforeTell = Callable[[str, optuna.Trial, TrialVerdict, Mapping[str, Any] | None], None]


def verdict_for(
    result: Mapping[str, Any] | None, *, error: bool, objectives: Sequence[str]
) -> TrialVerdict:
    """Decide the Optuna state of a finished trial from its last (flattened) result."""
    if error:
        reason = (result or {}).get(ERROR_KEY) or GENERIC_ERROR
        return TrialVerdict(TrialState.FAIL, None, str(reason))
    if not result or not result.get(FINAL_KEY):
        return TrialVerdict(TrialState.PRUNED, None, "stopped before its final metrics")
    values = [result.get(OBJECTIVE_PREFIX + name) for name in objectives]
    missing = [name for name, value in zip(objectives, values, strict=True) if value is None]
    if missing:
        return TrialVerdict(TrialState.FAIL, None, f"final metrics miss {', '.join(missing)}")
    floats = [float(value) for value in values if value is not None]
    bad = [name for name, value in zip(objectives, floats, strict=True) if not math.isfinite(value)]
    if bad:
        return TrialVerdict(TrialState.FAIL, None, f"objective {', '.join(bad)} is not finite")
    return TrialVerdict(TrialState.COMPLETE, floats, None)


class BaiOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that never leaves an Optuna trial ``RUNNING`` (see module docstring).

    Args:
        space: Define-by-run function ``(optuna_trial) -> extra config``.
        objectives: Objective names; results carry them as ``objectives/<name>``.
        directions: ``maximize`` / ``minimize`` per objective.
        sampler, storage, study_name: As for ``OptunaSearch``.
        before_tell: Hook called with the open Optuna trial just before it is told.
    """

    def __init__(
        self,
        space: Callable[[optuna.Trial], dict[str, Any] | None],
        *,
        objectives: Sequence[str],
        directions: Sequence[str],
        sampler: optuna.samplers.BaseSampler,
        storage: optuna.storages.BaseStorage,
        study_name: str,
        before_tell: BeforeTell | None = None,
    ) -> None:
        self._objective_names = list(objectives)
        modes = ["max" if d == "maximize" else "min" for d in directions]
        metrics = [OBJECTIVE_PREFIX + name for name in objectives]
        super().__init__(
            space=space,
            metric=metrics if len(metrics) > 1 else metrics[0],
            mode=modes if len(modes) > 1 else modes[0],
            sampler=sampler,
            storage=storage,
            study_name=study_name,
        )
        self._before_tell = before_tell
        self._last_results: dict[str, dict[str, Any]] = {}
        self.verdicts: dict[str, TrialVerdict] = {}

    @property
    def study(self) -> optuna.Study:
        """The Optuna study trials are told to."""
        assert self._ot_study is not None, "the searcher has no study yet"
        return self._ot_study

    def optuna_trial(self, trial_id: str) -> optuna.Trial | None:
        """The Optuna trial asked for Tune trial ``trial_id`` (None before it was suggested)."""
        return self._ot_trials.get(trial_id)

    def open_trials(self) -> dict[str, optuna.Trial]:
        """The asked trials not told yet, by Tune trial id."""
        return {
            trial_id: trial
            for trial_id, trial in self._ot_trials.items()
            if trial_id not in self._completed_trials
        }

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # An attempt lost mid-way may leave a half-asked trial RUNNING in the study: the run
        # fails such strays when it ends (they hold no result).
        return retry_storage(lambda: super(BaiOptunaSearch, self).suggest(trial_id), "ask")

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        # No intermediate values: there is no pruner, and per-step reports do not carry the
        # objectives. Keep the last result for the verdict.
        self._last_results[trial_id] = result

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        last = self._last_results.pop(trial_id, None)
        merged = {**(last or {}), **(result or {})}
        verdict = verdict_for(merged or None, error=error, objectives=self._objective_names)
        self._tell(trial_id, verdict, merged or None)

    def finish_unfinished(self, state: TrialState, reason: str) -> list[str]:
        """Tell every asked but untold trial ``state`` (FAIL or PRUNED) with ``reason``.

        Returns:
            The Tune trial ids told.
        """
        told = []
        for trial_id in list(self._ot_trials):
            if trial_id not in self._completed_trials:
                last = self._last_results.pop(trial_id, None)
                self._tell(trial_id, TrialVerdict(state, None, reason), last)
                told.append(trial_id)
        return told

    def _tell(self, trial_id: str, verdict: TrialVerdict, result: Mapping[str, Any] | None) -> None:
        ot_trial = self._ot_trials[trial_id]
        hook = self._before_tell
        if hook is not None:
            try:
                retry_storage(lambda: hook(trial_id, ot_trial, verdict, result), "decorate")
            except Exception:  # decorations must never keep a trial open
                logger.exception("decorating Optuna trial %d failed", ot_trial.number)
        if verdict.reason:
            reason = verdict.reason
            retry_storage(lambda: ot_trial.set_user_attr("fail_reason", reason), "fail reason")

        def tell(values: list[float] | None, state: TrialState) -> None:
            self.study.tell(ot_trial, values, state=state, skip_if_finished=True)

        try:
            retry_storage(lambda: tell(verdict.values, verdict.state), "tell")
        except ValueError as exc:
            if verdict.state is not TrialState.COMPLETE:
                raise
            logger.warning("Optuna refused trial %d's values (%s): told FAIL", ot_trial.number, exc)
            verdict = TrialVerdict(TrialState.FAIL, None, f"Optuna refused the values: {exc}")
            retry_storage(lambda: tell(None, TrialState.FAIL), "tell")
        self.verdicts[trial_id] = verdict
        self._completed_trials.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a sweep resumes from its Optuna study in the database."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a sweep resumes from its Optuna study in the database."""
