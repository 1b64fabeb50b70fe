"""The sweep runner: Optuna proposes ``(w, alpha)``, Ray Tune runs the trials, storage records.

:func:`run_sweep` takes a sweep that a worker (or ``bai-sweep run``) has claimed, heart-beats
it from a background thread, and runs its remaining trial budget:

1. The Optuna study (``RDBStorage`` on the sweep's own database, study name from the sweep
   row) is created or loaded. Orphaned ``RUNNING`` trials of a lost run are told ``FAIL``
   (user attribute ``interrupted``) and their ratios enqueued again; seed points are enqueued
   once. The remaining budget is ``n_trials`` minus the trials that finished (interrupted
   ones do not count).
2. A Ray Tune ``Tuner`` runs that many trials through :class:`BaiOptunaSearch` with the
   spec's resources and ``max_concurrent_trials``. Each trial (:func:`sweeps.trial.run_trial`
   in a Ray actor that keeps its loaded inputs between trials) reports every probe step with
   ``tune.report`` and then its final objectives.
3. In the driver, a Tune callback streams steps and finished trials into the database and
   recomputes the stored Pareto front (with its hypervolume) after every finished trial;
   just before each Optuna trial is told, its stability and benchmark metrics become user
   attributes and its curve PNG an Optuna artifact (for optuna-dashboard).
4. A cancel request (seen by the heartbeat) stops the Tuner at once: the sweep ends
   ``cancelled`` and running trials ``pruned``. A worker shutting down (``should_stop``) or
   losing its claim stops too, leaving the interrupted trials to be re-run on resume.

Ray: ``ray_address`` connects to an existing cluster; otherwise a local instance sized to the
machine is started (and shut down at the end). An already initialised Ray is reused.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from sweeps._optuna_search import (
    ERROR_KEY,
    FINAL_KEY,
    GENERIC_ERROR,
    BaiOptunaSearch,
    TrialVerdict,
)
from sweeps.exceptions import SweepRunError, SweepsError
from sweeps.memory_plan import check_trial_memory
from sweeps.search_space import Candidate, SearchSpace, make_sampler
from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    import optuna
    from sqlalchemy import Engine

__all__ = ["SweepOutcome", "SweepProgress", "run_sweep", "study_storage"]

logger = logging.getLogger(__name__)

#: Optuna user attribute marking a trial that a lost or stopped run left unfinished.
INTERRUPTED_ATTR = "interrupted"
#: Optuna study user attribute set once the seed points were enqueued.
SEEDED_ATTR = "seed_points_enqueued"
#: Result key of one probe step in a trial's per-step reports.
STEP_KEY = "probe_step"

_STATE_NAMES = {"COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned"}
_ACTIVE_RUNS: dict[str, _SweepRun] = {}


@dataclass(frozen=True)
class SweepProgress:
    """A snapshot of a running sweep, passed to the ``progress`` callback."""

    sweep_id: str
    n_trials: int
    #: Trials counted against the budget (complete, failed or pruned, not interrupted).
    finished: int
    complete: int
    failed: int
    pruned: int
    #: Running trial number -> latest probe step.
    running: dict[int, int]
    hypervolume: float | None
    event: str


@dataclass(frozen=True)
class SweepOutcome:
    """How a :func:`run_sweep` call ended.

    ``status`` is the sweep's final status (``succeeded``, ``failed``, ``cancelled``), or
    ``stopped`` (the caller asked to stop: the sweep is still ``running`` and should be
    released to the queue) or ``lost`` (another worker took the sweep over).
    """

    sweep_id: str
    status: str
    n_trials: int
    finished: int
    complete: int
    failed: int
    pruned: int
    front: list[int]
    hypervolume: float | None
    error: str | None
    trials_run: int
    wall_time_s: float
    exported: dict[int, str] = field(default_factory=dict)


def study_storage(database_url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the sweep database (psycopg 3 for PostgreSQL)."""
    import optuna

    from storage.engine import normalize_url

    url = normalize_url(database_url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 30}}
    return optuna.storages.RDBStorage(
        url.render_as_string(hide_password=False), engine_kwargs=engine_kwargs
    )


# --- the trial as Ray Tune runs it ------------------------------------------------------


def tune_trainable(
    config: dict[str, Any], *, spec_json: dict[str, Any], trust_remote_code: bool
) -> None:
    """Ray Tune function trainable: one trial, per-step and final results via ``tune.report``."""
    from sweeps.trial import run_trial

    spec = SweepSpec.model_validate(spec_json)
    candidate = Candidate(tuple(float(w) for w in config["weights"]), float(config["alpha"]))

    def report_step(step: Any) -> None:
        tune.report({STEP_KEY: step.model_dump()})

    try:
        outcome = run_trial(
            spec, candidate, on_step=report_step, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        tune.report({ERROR_KEY: f"{type(exc).__name__}: {exc}"})
        raise
    tune.report(
        {
            FINAL_KEY: True,
            "objectives": outcome.objectives,
            "stability": outcome.stability,
            "benchmarks": outcome.benchmarks,
            "probe": outcome.probe,
            "timings": outcome.timings,
        }
    )


@dataclass
class _SpaceFunction:
    """Optuna define-by-run space: samples a candidate, returns weights and seed kind too."""

    space: SearchSpace

    def __call__(self, trial: Any) -> dict[str, Any]:
        candidate = self.space.suggest(trial)
        trial.set_user_attr("weights", list(candidate.weights))
        return {"weights": list(candidate.weights), "seed_kind": trial.user_attrs.get("seed_kind")}


# --- the driver-side run -------------------------------------------------------------------


@dataclass
class _TrialLive:
    number: int
    candidate: Candidate
    seed_kind: str | None
    started_at: datetime
    steps: list[dict[str, Any]] = field(default_factory=list)


class _SweepRun:
    """Everything a running sweep shares between its driver-side pieces."""

    def __init__(
        self,
        *,
        engine: Engine,
        sweep_id: str,
        spec: SweepSpec,
        n_trials: int,
        data_dir: Path,
        progress: Callable[[SweepProgress], None] | None,
    ) -> None:
        self.engine = engine
        self.sweep_id = sweep_id
        self.spec = spec
        self.n_trials = n_trials
        self.data_dir = data_dir
        self.progress = progress
        self.space = spec.search_space()
        self.searcher: BaiOptunaSearch | None = None
        self.artifact_store: Any = None
        self.live: dict[str, _TrialLive] = {}
        self.stop_event = threading.Event()
        self.cancel_event = threading.Event()
        self.lost_event = threading.Event()
        self.counts = {"complete": 0, "failed": 0, "pruned": 0}
        self.finished_before = 0
        self.hypervolume: float | None = None
        self.trials_run = 0
        self.lock = threading.Lock()

    # progress ------------------------------------------------------------------------------
    def emit(self, event: str) -> None:
        if self.progress is None:
            return
        running = {
            live.number: (live.steps[-1]["step"] if live.steps else 0)
            for live in self.live.values()
        }
        snapshot = SweepProgress(
            sweep_id=self.sweep_id,
            n_trials=self.n_trials,
            finished=self.finished_before + sum(self.counts.values()),
            complete=self.counts["complete"],
            failed=self.counts["failed"],
            pruned=self.counts["pruned"],
            running=running,
            hypervolume=self.hypervolume,
            event=event,
        )
        try:
            self.progress(snapshot)
        except Exception:
            logger.exception("progress callback failed")

    # Tune callback hooks -------------------------------------------------------------------
    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        from storage import repository
        from storage.engine import session_scope

        assert self.searcher is not None
        ot_trial = self.searcher.optuna_trial(trial_id)
        if ot_trial is None:
            return
        candidate = Candidate(tuple(config["weights"]), float(config["alpha"]))
        live = _TrialLive(ot_trial.number, candidate, config.get("seed_kind"), _now())
        self.live[trial_id] = live
        with session_scope(self.engine) as session:
            repository.upsert_trial(
                session,
                sweep_id=self.sweep_id,
                number=live.number,
                weights=candidate.weights,
                alpha=candidate.alpha,
                state="running",
                seed_kind=live.seed_kind,
                started_at=live.started_at,
            )
        self.emit(f"trial #{live.number} started: {candidate.label()}")

    def trial_step(self, trial_id: str, step: Mapping[str, Any]) -> None:
        from storage import repository
        from storage.engine import session_scope

        live = self.live.get(trial_id)
        if live is None:
            return
        row = dict(step)
        row["reward"] = row.pop("reward_mean", None)
        live.steps.append(row)
        with session_scope(self.engine) as session:
            repository.record_steps(
                session, sweep_id=self.sweep_id, trial_number=live.number, steps=[row]
            )
        self.emit(f"trial #{live.number} step {row['step']}")

    def before_tell(
        self,
        trial_id: str,
        ot_trial: optuna.Trial,
        verdict: TrialVerdict,
        result: Mapping[str, Any] | None,
    ) -> None:
        """Decorate the Optuna trial for the dashboard before it is told."""
        from sweeps.reports import TrialRecord, trial_curves_figure

        result = result or {}
        prefixes = ("stability/", "benchmarks/", "probe/", "timings/")
        for key, value in result.items():
            scalar = isinstance(value, int | float | str | bool) or value is None
            if key.startswith(prefixes) and scalar:
                ot_trial.set_user_attr(key, value)
        live = self.live.get(trial_id)
        if live is None or not live.steps or self.artifact_store is None:
            return
        from optuna.artifacts import upload_artifact

        record = TrialRecord(
            number=live.number,
            weights=live.candidate.weights,
            alpha=live.candidate.alpha,
            state=_STATE_NAMES.get(verdict.state.name, "failed"),
            seed_kind=live.seed_kind,
            steps=live.steps,
        )
        with tempfile.TemporaryDirectory(prefix="bai-sweep-curve-") as tmp:
            path = Path(tmp) / f"trial-{live.number}-curves.png"
            path.write_bytes(trial_curves_figure(record))
            upload_artifact(
                artifact_store=self.artifact_store, file_path=str(path), study_or_trial=ot_trial
            )

    def trial_finished(
        self, trial_id: str, result: Mapping[str, Any], error_text: str | None
    ) -> None:
        from storage import repository
        from storage.engine import session_scope
        from sweeps.results import update_front

        assert self.searcher is not None
        live = self.live.pop(trial_id, None)
        verdict = self.searcher.verdicts.get(trial_id)
        if live is None or verdict is None:
            return
        state = _STATE_NAMES[verdict.state.name]
        error = verdict.reason
        if error == GENERIC_ERROR and error_text:
            error = error_text
        finished_at = _now()
        with session_scope(self.engine) as session:
            repository.upsert_trial(
                session,
                sweep_id=self.sweep_id,
                number=live.number,
                weights=live.candidate.weights,
                alpha=live.candidate.alpha,
                state=state,
                seed_kind=live.seed_kind,
                objectives=result.get("objectives") if state == "complete" else None,
                stability=result.get("stability"),
                benchmarks=result.get("benchmarks"),
                error=error,
                finished_at=finished_at,
                duration_s=(finished_at - live.started_at).total_seconds(),
            )
            front = update_front(session, sweep_id=self.sweep_id)
        self.hypervolume = front.hypervolume
        if not (verdict.reason or "").startswith("interrupted"):
            self.counts[state] += 1
            self.trials_run += 1
        self.emit(f"trial #{live.number} {state}" + (f": {error}" if error else ""))


def _now() -> datetime:
    return datetime.now(UTC)


def _error_text(tune_trial: Any) -> str | None:
    """The last line of a Tune trial's error (the exception and its message)."""
    error_file = getattr(tune_trial, "error_file", None)
    if not error_file or not os.path.isfile(error_file):
        return None
    try:
        lines = [line.strip() for line in Path(error_file).read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


class _SweepRecorder(tune.Callback):
    """Streams a sweep's trials into the database (runs in the Tune driver).

    Holds only the sweep id: Tune pickles its run config, the live run stays in this process.
    """

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def _run(self) -> _SweepRun | None:
        return _ACTIVE_RUNS.get(self.sweep_id)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run = self._run()
        if run is not None:
            run.trial_started(trial.trial_id, trial.config)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        run = self._run()
        if run is not None and STEP_KEY in result:
            run.trial_step(trial.trial_id, result[STEP_KEY])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run = self._run()
        if run is not None:
            run.trial_finished(trial.trial_id, trial.last_result or {}, _error_text(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run = self._run()
        if run is not None:
            run.trial_finished(trial.trial_id, trial.last_result or {}, _error_text(trial))


class _SweepStopper(tune.Stopper):
    """Stops the whole Tuner once the run's stop event is set (cancel, shutdown, lost claim)."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        run = _ACTIVE_RUNS.get(self.sweep_id)
        return run is not None and run.stop_event.is_set()


class _BeforeTell:
    """Picklable link from the searcher to the live run's :meth:`_SweepRun.before_tell`."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, *args: Any) -> None:
        run = _ACTIVE_RUNS.get(self.key)
        if run is not None:
            run.before_tell(*args)


# --- the study: resume and seed points ------------------------------------------------------


def _finished_count(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        and not t.user_attrs.get(INTERRUPTED_ATTR)
    )


def _prepare_study(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    space: SearchSpace,
    spec: SweepSpec,
    *,
    reason: str,
) -> list[int]:
    """Fail orphaned RUNNING trials (re-enqueueing their ratios) and enqueue the seed points.

    Returns:
        The numbers of the orphaned trials.
    """
    from optuna.trial import TrialState

    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in orphans:
        # A trial of another (dead) process: only the storage can still decorate it.
        storage.set_trial_user_attr(trial._trial_id, INTERRUPTED_ATTR, True)
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        study.tell(trial.number, state=TrialState.FAIL)
        user_attrs = {"retry_of": trial.number}
        if trial.user_attrs.get("seed_kind"):
            user_attrs["seed_kind"] = trial.user_attrs["seed_kind"]
        study.enqueue_trial(dict(trial.params), user_attrs=user_attrs)
    if not study.user_attrs.get(SEEDED_ATTR):
        for point in spec.seed_points():
            study.enqueue_trial(
                space.params(point.candidate),
                user_attrs={"seed_kind": point.kind},
                skip_if_exists=True,
            )
        study.set_user_attr(SEEDED_ATTR, True)
    return [t.number for t in orphans]


def _interrupt_open_trials(run: _SweepRun, reason: str) -> None:
    """Tell still-open trials FAIL as interrupted and enqueue their ratios again."""
    from optuna.trial import TrialState

    assert run.searcher is not None
    study = run.searcher.study
    open_trials = run.searcher.open_trials()
    for trial in open_trials.values():
        trial.set_user_attr(INTERRUPTED_ATTR, True)
    told = run.searcher.finish_unfinished(TrialState.FAIL, reason)
    for trial_id in told:
        trial = open_trials[trial_id]
        attrs: dict[str, Any] = {"retry_of": trial.number}
        if trial.user_attrs.get("seed_kind"):
            attrs["seed_kind"] = trial.user_attrs["seed_kind"]
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)


# --- Ray -----------------------------------------------------------------------------------------


def _ensure_ray(ray_address: str | None) -> bool:
    """Connect to or start Ray; return True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return True


def _configure_tune_environment() -> None:
    # Per-step reports do not carry the objectives; Tune's strict check would reject them.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Our callback records everything; Tune's CSV/JSON/TensorBoard loggers only cost time.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Without those loggers Tune's result grid cannot read metrics back, and says so; the
    # sweep's results live in the database.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


# --- heartbeat -----------------------------------------------------------------------------------


def _heartbeat_loop(
    run: _SweepRun,
    *,
    worker_id: str,
    interval: float,
    should_stop: Callable[[], bool] | None,
    done: threading.Event,
) -> None:
    from storage import repository
    from storage.engine import session_scope

    while True:
        try:
            with session_scope(run.engine) as session:
                beat = repository.heartbeat(session, sweep_id=run.sweep_id, worker_id=worker_id)
            if not beat.owned:
                logger.warning(
                    "sweep %s is no longer held by %s: stopping", run.sweep_id, worker_id
                )
                run.lost_event.set()
                run.stop_event.set()
            elif beat.cancel_requested:
                run.cancel_event.set()
                run.stop_event.set()
        except Exception:
            logger.exception("heartbeat of sweep %s failed", run.sweep_id)
        # Check the caller's stop flag often, the database once per interval.
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            if should_stop is not None and should_stop():
                run.stop_event.set()
            if done.wait(min(0.5, interval)):
                return


# --- the entry point --------------------------------------------------------------------------


def run_sweep(
    *,
    database_url: str,
    sweep_id: str,
    data_dir: str | Path,
    worker_id: str,
    ray_address: str | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
    heartbeat_interval: float = 10.0,
    should_stop: Callable[[], bool] | None = None,
    trust_remote_code: bool = False,
) -> SweepOutcome:
    """Run (or resume) a claimed sweep to its end and record its final status.

    Args:
        database_url: The database holding the sweep, its trials and its Optuna study.
        sweep_id: A sweep in status ``running`` claimed by ``worker_id``.
        data_dir: Working directory: Optuna artifacts (``artifacts/``), Ray results
            (``ray-results/``) and exported front actors (``exports/<sweep id>/``).
        worker_id: The claimant; heartbeats are sent under this id.
        ray_address: An existing Ray cluster; default a local Ray sized to this machine.
        progress: Called in the driver after every trial event with a :class:`SweepProgress`.
        heartbeat_interval: Seconds between heartbeats (and cancel checks).
        should_stop: Polled twice a second; once true the sweep stops and is left ``running``
            (outcome ``stopped``) so that the caller can release it for a later resume.
        trust_remote_code: Let checkpoints run their own modelling code.

    Returns:
        The outcome; the final status is already stored.

    Raises:
        SweepRunError: The sweep does not exist or is not running under ``worker_id``.
    """
    from storage import repository
    from storage.engine import create_engine_for, session_scope
    from storage.exceptions import NotFoundError

    started = time.perf_counter()
    data_dir = Path(data_dir).expanduser().resolve()
    engine = create_engine_for(database_url)
    try:
        with session_scope(engine) as session:
            sweep = repository.get_sweep(session, sweep_id=sweep_id)
    except NotFoundError:
        raise SweepRunError(f"sweep {sweep_id!r} does not exist") from None
    if sweep.status.value != "running" or sweep.worker_id != worker_id:
        raise SweepRunError(
            f"sweep {sweep_id!r} is {sweep.status.value} (worker {sweep.worker_id!r}), "
            f"not running under {worker_id!r}"
        )
    try:
        spec = SweepSpec.model_validate(sweep.spec)
    except Exception as exc:
        return _finish(engine, sweep_id, worker_id, "failed", f"invalid spec: {exc}", started)
    try:
        memory_warning = check_trial_memory(spec, trust_remote_code=trust_remote_code)
    except SweepsError as exc:
        return _finish(engine, sweep_id, worker_id, "failed", str(exc), started)
    if memory_warning:
        logger.warning("sweep %s: %s", sweep_id, memory_warning)
    run = _SweepRun(
        engine=engine,
        sweep_id=sweep_id,
        spec=spec,
        n_trials=sweep.n_trials,
        data_dir=data_dir,
        progress=progress,
    )
    done = threading.Event()
    beat = threading.Thread(
        target=_heartbeat_loop,
        kwargs={
            "run": run,
            "worker_id": worker_id,
            "interval": heartbeat_interval,
            "should_stop": should_stop,
            "done": done,
        },
        name=f"heartbeat-{sweep_id}",
        daemon=True,
    )
    beat.start()
    _ACTIVE_RUNS[sweep_id] = run
    try:
        status, error = _execute(
            run,
            study_name=sweep.study_name,
            database_url=database_url,
            ray_address=ray_address,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:
        logger.exception("sweep %s failed", sweep_id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        done.set()
        beat.join()
        _ACTIVE_RUNS.pop(sweep_id, None)
    exported: dict[int, str] = {}
    if status == "succeeded" and spec.export_front:
        try:
            exported = _export_front(run, worker_id)
        except Exception as exc:
            logger.exception("exporting the front of sweep %s failed", sweep_id)
            status, error = "failed", f"exporting the front failed: {type(exc).__name__}: {exc}"
    return _finish(engine, sweep_id, worker_id, status, error, started, run=run, exported=exported)


def _execute(
    run: _SweepRun,
    *,
    study_name: str,
    database_url: str,
    ray_address: str | None,
    trust_remote_code: bool,
) -> tuple[str, str | None]:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.trial import TrialState

    from storage import repository
    from storage.engine import session_scope

    spec = run.spec
    storage = study_storage(database_url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=spec.directions,
        load_if_exists=True,
    )
    orphans = _prepare_study(
        study, storage, run.space, spec, reason="interrupted: its run was lost before it finished"
    )
    with session_scope(run.engine) as session:
        repository.fail_running_trials(
            session,
            sweep_id=run.sweep_id,
            error="interrupted: its run was lost before it finished (re-run on resume)",
        )
        front = repository.get_front(session, sweep_id=run.sweep_id)
    run.hypervolume = front.hypervolume if front else None
    if orphans:
        logger.info("sweep %s: re-enqueued interrupted trials %s", run.sweep_id, orphans)
    run.finished_before = _finished_count(study)
    remaining = run.n_trials - run.finished_before
    run.emit(f"resuming with {remaining} trials left" if run.finished_before else "starting")
    if remaining <= 0:
        return _final_status(run, study)

    artifact_dir = run.data_dir / "artifacts"
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run.artifact_store = FileSystemArtifactStore(str(artifact_dir))
    sampler = make_sampler(
        spec.search.sampler, run.space, seed=spec.search.seed, grid_levels=spec.search.grid_levels
    )
    searcher = BaiOptunaSearch(
        _SpaceFunction(run.space),
        objectives=spec.objective_names,
        directions=spec.directions,
        sampler=sampler,
        storage=storage,
        study_name=study_name,
        before_tell=_BeforeTell(run.sweep_id),
    )
    run.searcher = searcher
    started_ray = _ensure_ray(ray_address)
    try:
        _fit(run, searcher, remaining, trust_remote_code=trust_remote_code)
    finally:
        if run.cancel_event.is_set():
            searcher.finish_unfinished(TrialState.PRUNED, "cancelled")
        elif searcher.open_trials():
            _interrupt_open_trials(run, "interrupted: the sweep stopped before it finished")
        _record_open_trials(run)
        if started_ray:
            import ray

            ray.shutdown()
    return _final_status(run, study)


def _fit(
    run: _SweepRun, searcher: BaiOptunaSearch, remaining: int, *, trust_remote_code: bool
) -> None:
    _configure_tune_environment()
    spec = run.spec
    resources = {"cpu": spec.resources.cpus_per_trial}
    if spec.resources.gpus_per_trial:
        resources["gpu"] = spec.resources.gpus_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(
            tune_trainable, spec_json=spec.to_json_dict(), trust_remote_code=trust_remote_code
        ),
        resources,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=remaining,
            max_concurrent_trials=spec.resources.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"sweep-{run.sweep_id}-{datetime.now(UTC):%Y%m%dT%H%M%S}",
            storage_path=str(run.data_dir / "ray-results"),
            callbacks=[_SweepRecorder(run.sweep_id)],
            stop=_SweepStopper(run.sweep_id),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.trial_id}"


def _record_open_trials(run: _SweepRun) -> None:
    """Write the verdicts of trials the Tuner ended without a callback into the database."""
    assert run.searcher is not None
    for trial_id in list(run.live):
        if trial_id in run.searcher.verdicts:
            run.trial_finished(trial_id, {}, None)


def _final_status(run: _SweepRun, study: optuna.Study) -> tuple[str, str | None]:
    from optuna.trial import TrialState

    if run.lost_event.is_set():
        return "lost", "another worker took the sweep over"
    if run.cancel_event.is_set():
        return "cancelled", None
    if run.stop_event.is_set():
        return "stopped", None
    finished = _finished_count(study)
    if finished < run.n_trials:
        return "failed", f"only {finished} of {run.n_trials} trials finished"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "failed", "no trial completed (see the trials' errors)"
    return "succeeded", None


def _export_front(run: _SweepRun, worker_id: str) -> dict[int, str]:
    """Write the merged actors of the final front (``exports/<sweep id>/trial-<n>``)."""
    from storage import repository
    from storage.engine import session_scope
    from sweeps.merge import merge_bai

    with session_scope(run.engine) as session:
        front = repository.get_front(session, sweep_id=run.sweep_id)
    exported: dict[int, str] = {}
    if front is None:
        return exported
    root = run.data_dir / "exports" / run.sweep_id
    models = run.spec.models
    for member in front.members:
        out = merge_bai(
            base=models.base,
            sfts=models.sft,
            weights=member.weights,
            alpha=member.alpha,
            out=root / f"trial-{member.trial_number}",
            normalize=True,
            overwrite=True,
        )
        exported[member.trial_number] = str(out)
        with session_scope(run.engine) as session:
            trial = repository.get_trial(session, sweep_id=run.sweep_id, number=member.trial_number)
            repository.upsert_trial(
                session,
                sweep_id=run.sweep_id,
                number=trial.number,
                weights=trial.weights,
                alpha=trial.alpha,
                state=trial.state,
                actor_path=str(out),
            )
    return exported


def _finish(
    engine: Engine,
    sweep_id: str,
    worker_id: str,
    status: str,
    error: str | None,
    started: float,
    *,
    run: _SweepRun | None = None,
    exported: dict[int, str] | None = None,
) -> SweepOutcome:
    from storage import repository
    from storage.engine import session_scope
    from storage.exceptions import ConflictError

    with session_scope(engine) as session:
        if status in ("succeeded", "failed", "cancelled"):
            try:
                repository.finish_sweep(
                    session, sweep_id=sweep_id, status=status, error=error, worker_id=worker_id
                )
            except ConflictError as exc:
                logger.warning("sweep %s could not be finished: %s", sweep_id, exc)
                status, error = "lost", str(exc)
        summary = repository.sweep_summary(session, sweep_id=sweep_id)
    counts = {state.value: n for state, n in summary.trial_counts.items()}
    front = summary.front
    finished = run.finished_before + sum(run.counts.values()) if run is not None else 0
    return SweepOutcome(
        sweep_id=sweep_id,
        status=status,
        n_trials=summary.sweep.n_trials,
        finished=finished,
        complete=counts.get("complete", 0),
        failed=counts.get("failed", 0),
        pruned=counts.get("pruned", 0),
        front=[m.trial_number for m in front.members] if front else [],
        hypervolume=front.hypervolume if front else None,
        error=error,
        trials_run=run.trials_run if run is not None else 0,
        wall_time_s=time.perf_counter() - started,
        exported=exported or {},
    )
