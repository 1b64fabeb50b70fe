"""The sweep runner: Optuna proposes ``(w, alpha)``, Ray Tune runs the trials, storage records.

:func:`run_sweep` runs the remaining trial budget of a sweep whose :class:`SweepLease` the
caller holds (a worker, or ``bai-sweep run``). It never changes the sweep's status: it reads
the lease to know when to stop and why, and returns a :class:`SweepOutcome` whose
:class:`RunEnd` the caller settles the lease with. Its rooms:

- the study (:mod:`sweeps._study`): create or resume the Optuna study, fail orphans, enqueue
  seed points, seed the sampler from the study's history, decorate trials for the dashboard;
- the Tune driver (:mod:`sweeps._tune_driver`): the trainable, the Tuner, the searcher
  (:mod:`sweeps._optuna_search`), and the callbacks/stopper that report to this run;
- the recorder (:mod:`sweeps._recorder`): the only writer of trials, steps and the front,
  buffered and retried through database outages.

A cancel request stops the Tuner at once: running trials are told ``PRUNED`` and the run ends
:attr:`RunEnd.CANCELLED`. A shutdown (lease ``STOPPING``) or a lost lease stops it too,
leaving the interrupted trials to be re-run on resume. The front is exported (``export_front``)
while the lease is still held.

Ray: ``ray_address`` joins an existing cluster by its GCS address; otherwise a local instance
sized to the machine is started (and shut down at the end). An initialised Ray is reused.
Ray Client (``ray://``) is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from storage import repository
from storage.engine import session_scope
from storage.exceptions import NotFoundError
from storage.lease import LeaseState, RunEnd, SweepLease
from sweeps._optuna_search import (
    GENERIC_ERROR,
    BaiOptunaSearch,
    TrialVerdict,
    retry_storage,
)
from sweeps._ray_mode import check_ray_address
from sweeps._recorder import Recorder, RecorderError
from sweeps._study import (
    CANDIDATE_KEY,
    INTERRUPTED_ATTR,
    RUNG_KEY,
    STATE_NAMES,
    SweepStudy,
    curves_missing,
    decorate_trial,
    fidelity_attrs,
    finished_rows,
    ladder_plan,
    next_stage,
    open_study,
    requeue,
    stored_fidelity,
    study_storage,
    upload_trial_curves,
)
from sweeps._tune_driver import (
    PLACEMENT_KEY,
    STEP_KEY,
    SinkBeforeTell,
    SpaceFunction,
    ensure_ray,
    run_tuner,
)
from sweeps.exceptions import SweepRunError, SweepsError
from sweeps.fidelity import RungPlan
from sweeps.memory_plan import check_trial_memory
from sweeps.search_space import Candidate
from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from sweeps.reports import TrialRecord

__all__ = [
    "INTERRUPTED_ATTR",
    "RunEnd",
    "SweepOutcome",
    "SweepProgress",
    "run_sweep",
    "study_storage",
]

logger = logging.getLogger(__name__)

LOST_RUN = "interrupted: its run was lost before it finished (re-run on resume)"
STOPPED_RUN = "interrupted: the sweep stopped before it finished"


@dataclass(frozen=True)
class SweepProgress:
    """A snapshot of a running sweep, passed to the ``progress`` callback."""

    sweep_id: str
    #: The trial budget: probe runs, every rung's with successive halving
    #: (:meth:`SweepSpec.trial_budget`).
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
    """How a :func:`run_sweep` call ended (the caller settles the lease with ``status``)."""

    sweep_id: str
    status: RunEnd
    n_trials: int
    #: Trials counted against the budget (interrupted ones are not).
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


@dataclass
class _TrialLive:
    number: int
    candidate: Candidate
    seed_kind: str | None
    started_at: datetime
    node: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    #: Its successive-halving probe (``Trial.fidelity``), None without.
    fidelity: dict[str, int] | None = None

    def describe(self) -> str:
        """``w=(...) a=0.20`` and, with successive halving, its rung."""
        label = self.candidate.label()
        if self.fidelity is None:
            return label
        f = self.fidelity
        return f"{label} rung {f['rung']} ({f['steps']} steps x {f['repeats']} seeds)"


class _LiveSweep:
    """The running sweep as the Tune driver sees it (a :class:`TrialSink`)."""

    def __init__(
        self,
        *,
        lease: SweepLease,
        spec: SweepSpec,
        recorder: Recorder,
        progress: Callable[[SweepProgress], None] | None,
    ) -> None:
        self.lease = lease
        self.sweep_id = lease.sweep_id
        self.n_trials = lease.sweep.n_trials
        self.spec = spec
        self.recorder = recorder
        self.progress = progress
        self.searcher: BaiOptunaSearch | None = None
        self.artifact_store: Any = None
        self.optuna_study: Any = None
        self.live: dict[str, _TrialLive] = {}
        self.counts = {"complete": 0, "failed": 0, "pruned": 0}
        self.finished_before = 0
        self.trials_run = 0

    def emit(self, event: str, *, after_writes: bool = False) -> None:
        """Report ``event`` with a snapshot of the run taken now.

        With ``after_writes`` the snapshot is sent from the recorder's writer thread once the
        writes submitted so far are stored, with the hypervolume of the front they produced
        (a finished trial's line then shows the front including it, not the one before).
        """
        if self.progress is None:
            return
        snapshot = self._snapshot(event)
        if after_writes:
            self.recorder.attach(
                "progress",
                lambda: self._send(replace(snapshot, hypervolume=self.recorder.hypervolume)),
            )
        else:
            self._send(snapshot)

    def _snapshot(self, event: str) -> SweepProgress:
        running = {
            live.number: (live.steps[-1]["step"] if live.steps else 0)
            for live in self.live.values()
        }
        return SweepProgress(
            sweep_id=self.sweep_id,
            n_trials=self.n_trials,
            finished=self.finished_before + sum(self.counts.values()),
            complete=self.counts["complete"],
            failed=self.counts["failed"],
            pruned=self.counts["pruned"],
            running=running,
            hypervolume=self.recorder.hypervolume,
            event=event,
        )

    def _send(self, snapshot: SweepProgress) -> None:
        assert self.progress is not None
        try:
            self.progress(snapshot)
        except Exception:
            logger.exception("progress callback failed")

    # --- TrialSink ---------------------------------------------------------------------

    def should_stop(self) -> bool:
        return self.lease.should_stop or self.recorder.error is not None

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        assert self.searcher is not None
        ot_trial = self.searcher.optuna_trial(trial_id)
        if ot_trial is None:
            raise SweepRunError(f"Tune started trial {trial_id} that Optuna never proposed")
        candidate = Candidate(tuple(config["weights"]), float(config["alpha"]))
        live = _TrialLive(ot_trial.number, candidate, config.get("seed_kind"), _now())
        if config.get(RUNG_KEY) is not None:
            rung = self.spec.rungs()[int(config[RUNG_KEY])]
            live.fidelity = stored_fidelity(fidelity_attrs(rung, int(config[CANDIDATE_KEY])))
        self.live[trial_id] = live
        self._record_running(live)
        self.emit(f"trial #{live.number} started: {live.describe()}")

    def _record_running(self, live: _TrialLive) -> None:
        self.recorder.trial_started(
            live.number,
            weights=live.candidate.weights,
            alpha=live.candidate.alpha,
            seed_kind=live.seed_kind,
            started_at=live.started_at,
            node=live.node,
            fidelity=live.fidelity,
        )

    def trial_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        live = self.live.get(trial_id)
        if live is None:
            return  # a result Tune delivers after the trial was finished and recorded
        placement = result.get(PLACEMENT_KEY) or {}
        if live.node is None and placement.get("node"):
            live.node = str(placement["node"])
            self._record_running(live)
        if STEP_KEY not in result:
            return
        row = dict(result[STEP_KEY])
        live.steps.append(row)
        self.recorder.steps(live.number, [row])
        self.emit(f"trial #{live.number} step {row['step']}")

    def before_tell(
        self,
        trial_id: str,
        ot_trial: Any,
        verdict: TrialVerdict,
        result: Mapping[str, Any] | None,
    ) -> None:
        live = self.live.get(trial_id)
        if live is None:
            return
        decorate_trial(ot_trial, result, verdict=verdict)

    def attach_curves(self, record: TrialRecord) -> None:
        """Have the recorder render and upload a told trial's curve artifact."""
        self.recorder.attach(
            "curve artifact",
            partial(upload_trial_curves, self.optuna_study, self.artifact_store, record),
        )

    def trial_finished(
        self, trial_id: str, result: Mapping[str, Any], error_text: str | None
    ) -> None:
        assert self.searcher is not None
        verdict = self.searcher.verdicts.get(trial_id)
        live = self.live.get(trial_id)
        if live is None or verdict is None:
            return  # not told yet: the run's end tells and records it
        del self.live[trial_id]
        state = STATE_NAMES[verdict.state.name]
        error = verdict.reason
        if error == GENERIC_ERROR and error_text:
            error = error_text
        placement = result.get(PLACEMENT_KEY) or {}
        finished_at = _now()
        if not (verdict.reason or "").startswith("interrupted"):
            self.counts[state] += 1
            self.trials_run += 1
        self.recorder.trial_finished(
            live.number,
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
            node=live.node or placement.get("node"),
            fidelity=live.fidelity,
        )
        self.emit(
            f"trial #{live.number} {state}" + (f": {error}" if error else ""), after_writes=True
        )
        if live.steps:
            from sweeps.reports import TrialRecord  # matplotlib: imported once trials end

            self.attach_curves(
                TrialRecord(
                    number=live.number,
                    weights=live.candidate.weights,
                    alpha=live.candidate.alpha,
                    state=state,
                    seed_kind=live.seed_kind,
                    steps=live.steps,
                    fidelity=live.fidelity,
                )
            )


def _now() -> datetime:
    return datetime.now(UTC)


def run_sweep(
    *,
    lease: SweepLease,
    data_dir: str | Path,
    ray_address: str | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
    trust_remote_code: bool = False,
) -> SweepOutcome:
    """Run (or resume) the leased sweep until its budget is spent or the lease says stop.

    Args:
        lease: The held lease of the sweep (its engine is the one database connection pool
            of our tables; Optuna keeps its own on the same URL).
        data_dir: Working directory: Optuna artifacts (``artifacts/``), Ray results
            (``ray-results/``) and exported front actors (``exports/<sweep id>/``).
        ray_address: GCS address of a Ray cluster; default a local Ray sized to this machine.
        progress: Called in the driver after every trial event with a :class:`SweepProgress`.
        trust_remote_code: Let checkpoints run their own modelling code.

    Returns:
        The outcome; the caller settles the lease with ``outcome.status``.

    Raises:
        SweepRunError: The lease is not held, or ``ray_address`` is a Ray Client address.
    """
    started = time.perf_counter()
    check_ray_address(ray_address)
    if lease.state in (LeaseState.RELEASED, LeaseState.FINISHED, LeaseState.LOST):
        raise SweepRunError(f"the lease of sweep {lease.sweep_id} is {lease.state.value}")
    data_dir = Path(data_dir).expanduser().resolve()
    recorder = Recorder(lease.engine, lease.sweep_id, may_write=lambda: not lease.lost)
    try:
        spec = SweepSpec.model_validate(lease.sweep.spec)
        memory_warning = check_trial_memory(spec, trust_remote_code=trust_remote_code)
    except SweepsError as exc:
        recorder.close()
        return _outcome(lease, RunEnd.FAILED, str(exc), started)
    except Exception as exc:
        recorder.close()
        return _outcome(lease, RunEnd.FAILED, f"invalid spec: {exc}", started)
    if memory_warning:
        logger.warning("sweep %s: %s", lease.sweep_id, memory_warning)
    run = _LiveSweep(lease=lease, spec=spec, recorder=recorder, progress=progress)
    exported: dict[int, str] = {}
    try:
        end, error = _execute(
            run, data_dir=data_dir, ray_address=ray_address, trust=trust_remote_code
        )
        if end is RunEnd.SUCCEEDED and spec.export_front:
            try:
                exported = _export_front(run, data_dir)
            except Exception as exc:
                logger.exception("exporting the front of sweep %s failed", run.sweep_id)
                end, error = (
                    RunEnd.FAILED,
                    f"exporting the front failed: {type(exc).__name__}: {exc}",
                )
            # Cancelled, stopped or lost during the export: that is how the run ended.
            end, error = _stopped_end(lease) or (end, error)
    except Exception as exc:
        logger.exception("sweep %s failed", run.sweep_id)
        end, error = RunEnd.FAILED, f"{type(exc).__name__}: {exc}"
    try:
        recorder.close()
    except RecorderError as exc:
        end, error = RunEnd.FAILED, f"results could not be stored: {exc}"
    if lease.lost:
        end, error = RunEnd.LOST, "another worker took the sweep over"
    return _outcome(lease, end, error, started, run=run, exported=exported)


def _execute(
    run: _LiveSweep, *, data_dir: Path, ray_address: str | None, trust: bool
) -> tuple[RunEnd, str | None]:
    from optuna.artifacts import FileSystemArtifactStore

    spec = run.spec
    url = run.lease.engine.url.render_as_string(hide_password=False)
    study = retry_storage(
        lambda: open_study(url, run.lease.sweep.study_name, spec), "opening the study"
    )
    if study.orphans:
        logger.info("sweep %s: re-enqueued interrupted trials %s", run.sweep_id, study.orphans)
    run.recorder.repair(finished_rows(study), interrupted_error=LOST_RUN)
    artifact_dir = data_dir / "artifacts"
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run.artifact_store = FileSystemArtifactStore(str(artifact_dir))
    run.optuna_study = study.study
    _restore_curves(run, study)
    run.finished_before = study.finished()
    stage = retry_storage(lambda: next_stage(study), "planning the rung")
    remaining = run.n_trials - run.finished_before
    run.emit(f"resuming with {remaining} trials left" if run.finished_before else "starting")
    if stage is None:
        return _final_status(run, study)
    started_ray = ensure_ray(ray_address)
    try:
        while stage is not None and not run.should_stop():
            _run_stage(run, study, stage, data_dir=data_dir, trust=trust)
            done, stage = stage, retry_storage(lambda: next_stage(study), "planning the rung")
            if stage is not None and (stage.rung, stage.finished) == (done.rung, done.finished):
                break  # no probe of the stage was counted: _final_status says what is missing
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return _final_status(run, study)


def _run_stage(
    run: _LiveSweep, study: SweepStudy, stage: RungPlan, *, data_dir: Path, trust: bool
) -> None:
    """Run the probes left at ``stage``'s rung through one Tuner (every rung-0 candidate is
    sampled or seeded; a later rung's are enqueued by :func:`next_stage`)."""
    spec = run.spec
    searcher = BaiOptunaSearch(
        SpaceFunction(study.space, spec.rungs() if spec.fidelity.enabled else None),
        objectives=spec.objective_names,
        directions=spec.directions,
        sampler=study.sampler(),
        storage=study.storage,
        study_name=study.name,
        before_tell=SinkBeforeTell(run),
    )
    run.searcher = searcher
    left = stage.planned - stage.finished
    if spec.fidelity.enabled:
        rung = stage.rung
        run.emit(
            f"rung {rung.index}: {left} of {stage.planned} probes left "
            f"({rung.steps} steps x {rung.repeats} seeds)"
        )
    try:
        run_tuner(
            spec=spec,
            searcher=searcher,
            sink=run,
            num_samples=left,
            results_dir=data_dir / "ray-results",
            name=f"sweep-{run.sweep_id}"
            + (f"-rung{stage.rung.index}" if spec.fidelity.enabled else ""),
            trust_remote_code=trust,
        )
    finally:
        # A lost sweep is another worker's: its resume failed our open trials already.
        if run.lease.state is not LeaseState.LOST:
            if run.lease.state is LeaseState.CANCELLING:
                searcher.finish_unfinished(TrialState.PRUNED, "cancelled")
            elif searcher.open_trials():
                _interrupt_open_trials(run, study)
            for trial_id in list(run.live):
                if trial_id in searcher.verdicts:
                    run.trial_finished(trial_id, {}, None)
            study.interrupt_running(STOPPED_RUN)


def _restore_curves(run: _LiveSweep, study: SweepStudy) -> None:
    """Queue the curve artifacts that a kill between a trial's tell and its render lost."""
    missing = retry_storage(
        lambda: curves_missing(study.study, run.artifact_store), "listing artifacts"
    )
    if not missing:
        return
    from sweeps.results import trial_record

    # The rows come from the recorder's repair, queued just before: wait for it to be stored.
    run.recorder.flush()
    trials = []
    with session_scope(run.lease.engine, read_only=True) as session:
        for number in sorted(missing):
            try:
                trials.append(repository.get_trial(session, sweep_id=run.sweep_id, number=number))
            except NotFoundError:
                logger.warning("sweep %s: no row for trial %s, no curve", run.sweep_id, number)
    for trial in trials:
        if trial.steps:
            run.attach_curves(trial_record(trial, with_steps=True))


def _interrupt_open_trials(run: _LiveSweep, study: SweepStudy) -> None:
    """Tell still-open trials FAIL as interrupted and enqueue their ratios again."""
    assert run.searcher is not None
    open_trials = run.searcher.open_trials()
    for trial in open_trials.values():
        retry_storage(partial(trial.set_user_attr, INTERRUPTED_ATTR, True), "interrupt")
    for trial_id in run.searcher.finish_unfinished(TrialState.FAIL, STOPPED_RUN):
        retry_storage(partial(requeue, study.study, open_trials[trial_id]), "re-enqueue")


def _stopped_end(lease: SweepLease) -> tuple[RunEnd, str | None] | None:
    """How a run ends because of its lease (None while the lease is simply held)."""
    if lease.state is LeaseState.LOST:
        return RunEnd.LOST, "another worker took the sweep over"
    if lease.state is LeaseState.CANCELLING:
        return RunEnd.CANCELLED, None
    if lease.state is LeaseState.STOPPING:
        return RunEnd.STOPPED, None
    return None


def _final_status(run: _LiveSweep, study: SweepStudy) -> tuple[RunEnd, str | None]:
    stopped = _stopped_end(run.lease)
    if stopped is not None:
        return stopped
    if run.recorder.error is not None:
        return RunEnd.FAILED, f"results could not be stored: {run.recorder.error}"
    if retry_storage(lambda: ladder_plan(study), "planning the rung") is not None:
        finished = study.finished()
        return RunEnd.FAILED, f"only {finished} of {run.n_trials} trials finished"
    if not study.any_complete():
        return RunEnd.FAILED, "no trial completed (see the trials' errors)"
    return RunEnd.SUCCEEDED, None


def _export_front(run: _LiveSweep, data_dir: Path) -> dict[int, str]:
    """Write the merged actors of the final front (``exports/<sweep id>/trial-<n>``)."""
    from sweeps.merge import merge_bai

    run.recorder.flush()
    with session_scope(run.lease.engine, read_only=True) as session:
        front = repository.get_front(session, sweep_id=run.sweep_id)
    exported: dict[int, str] = {}
    if front is None:
        return exported
    root = data_dir / "exports" / run.sweep_id
    models = run.spec.models
    for member in front.members:
        if run.lease.should_stop:
            break
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
        run.recorder.actor_path(member.trial_number, str(out))
    return exported


def _outcome(
    lease: SweepLease,
    end: RunEnd,
    error: str | None,
    started: float,
    *,
    run: _LiveSweep | None = None,
    exported: dict[int, str] | None = None,
) -> SweepOutcome:
    with session_scope(lease.engine, read_only=True) as session:
        summary = repository.sweep_summary(session, sweep_id=lease.sweep_id)
        finished = repository.count_budget_trials(session, sweep_id=lease.sweep_id)
    counts = {state.value: n for state, n in summary.trial_counts.items()}
    front = summary.front
    return SweepOutcome(
        sweep_id=lease.sweep_id,
        status=end,
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
