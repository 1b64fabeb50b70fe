"""The Optuna room of a sweep: create or resume its study, seed points, sampler, decorations.

The study lives in Optuna's RDB storage on the sweep database. On every (re)start:

- orphaned ``RUNNING`` trials of a lost run are told ``FAIL`` (user attribute
  :data:`INTERRUPTED_ATTR`) and their ratios enqueued again;
- seed points are enqueued once (study attribute :data:`SEEDED_ATTR`);
- the sampler's seed is derived from the study's history (the spec's seed plus the number of
  trials so far), so a resumed sampler continues instead of replaying the first run's
  proposals;
- :func:`decorate_trial` sets a finished trial's constraints and dashboard metrics (one
  transaction) just before its tell; :func:`upload_trial_curves` attaches its curve PNG to the
  study afterwards, off the driver;
- :func:`finished_rows` lists what Optuna knows of every finished trial, for the recorder to
  repair a row that a kill between Optuna's tell and our write left behind. Our row is always
  written after the tell (Tune tells its searcher before its callbacks, and the recorder
  writes after the callback), so a kill can only leave our row behind Optuna's, never ahead.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps._optuna_search import TrialVerdict, retry_storage
from sweeps.constraints import constraints_from_result, set_trial_constraints
from sweeps.fidelity import Probe, Rung, RungPlan, next_rung
from sweeps.search_space import SearchSpace, make_sampler
from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from optuna.artifacts import FileSystemArtifactStore

    from sweeps.reports import TrialRecord

logger = logging.getLogger(__name__)

#: Optuna user attribute marking a trial that a lost or stopped run left unfinished.
INTERRUPTED_ATTR = "interrupted"
#: Optuna study user attribute set once the seed points were enqueued.
SEEDED_ATTR = "seed_points_enqueued"
#: Config key and Optuna user attribute of a trial's successive-halving rung.
RUNG_KEY = "rung"
#: Optuna user attribute of a trial's candidate (the number of its rung-0 trial).
CANDIDATE_KEY = "candidate"
#: Result prefixes copied into Optuna user attributes (shown by optuna-dashboard).
DASHBOARD_PREFIXES = ("stability/", "benchmarks/", "probe/", "timings/", "placement/")

STATE_NAMES = {"COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned"}
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def study_storage(database_url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the sweep database (psycopg 3 for PostgreSQL)."""
    from storage.engine import normalize_url

    url = normalize_url(database_url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 30}}
    return optuna.storages.RDBStorage(
        url.render_as_string(hide_password=False), engine_kwargs=engine_kwargs
    )


def finished_count(study: optuna.Study) -> int:
    """Trials counted against the budget: finished, not interrupted."""
    return sum(1 for t in study.get_trials(deepcopy=False) if _counted(t))


@dataclass
class SweepStudy:
    """A sweep's Optuna study, opened (and repaired) for a run."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    spec: SweepSpec
    space: SearchSpace
    #: Numbers of orphaned trials failed and re-enqueued on opening.
    orphans: list[int]

    @property
    def name(self) -> str:
        """The study name."""
        return self.study.study_name

    def finished(self) -> int:
        """Trials counted against the budget so far."""
        return finished_count(self.study)

    def any_complete(self) -> bool:
        """True if at least one trial completed."""
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def interrupt_running(self, reason: str) -> list[int]:
        """Fail (as interrupted) and re-enqueue trials still ``RUNNING`` in the study.

        At a run's end these are strays: asks that a database outage cut short.
        """
        return [t.number for t in _fail_orphans(self.study, self.storage, reason=reason)]

    def sampler_seed(self) -> int | None:
        """The spec's seed plus the number of trials the study holds (None: random)."""
        seed = self.spec.search.seed
        return None if seed is None else seed + len(self.study.get_trials(deepcopy=False))

    def sampler(self) -> optuna.samplers.BaseSampler:
        """The spec's sampler, seeded from the study's history (see the module docstring)."""
        search = self.spec.search
        return make_sampler(
            search.sampler, self.space, seed=self.sampler_seed(), grid_levels=search.grid_levels
        )


def open_study(database_url: str, study_name: str, spec: SweepSpec) -> SweepStudy:
    """Create or load the sweep's study, fail its orphans and enqueue the seed points once."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(database_url)
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=spec.directions, load_if_exists=True
    )
    if list(study.metric_names or []) != list(spec.objective_names):
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.objective_names))
    space = spec.search_space()
    orphans = _fail_orphans(
        study, storage, reason="interrupted: its run was lost before it finished"
    )
    if not study.user_attrs.get(SEEDED_ATTR):
        for point in spec.seed_points():
            study.enqueue_trial(
                space.params(point.candidate),
                user_attrs={"seed_kind": point.kind},
                skip_if_exists=True,
            )
        study.set_user_attr(SEEDED_ATTR, True)
    return SweepStudy(study, storage, spec, space, [t.number for t in orphans])


def _fail_orphans(
    study: optuna.Study, storage: optuna.storages.BaseStorage, *, reason: str
) -> list[FrozenTrial]:
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in orphans:
        # A trial of another (dead) process: only the storage can still decorate it.
        storage.set_trial_user_attr(trial._trial_id, INTERRUPTED_ATTR, True)
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        study.tell(trial.number, state=TrialState.FAIL)
        requeue(study, trial)
    return orphans


def requeue(study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> None:
    """Enqueue an interrupted trial's ratios again (same seed kind, ``retry_of`` its number;
    a promoted candidate's retry keeps its rung and candidate).

    A trial killed between Optuna's ask and the ratios' suggestion has no params: an enqueued
    one (a seed point, a warm-start ratio, a promotion) comes back with the ratios it was
    enqueued with, so no seed point is lost; a sampled one has nothing to retry (the sampler
    proposes afresh)."""
    attrs: dict[str, Any] = {"retry_of": trial.number}
    if trial.user_attrs.get("seed_kind"):
        attrs["seed_kind"] = trial.user_attrs["seed_kind"]
    if trial.user_attrs.get(RUNG_KEY):
        attrs[RUNG_KEY] = trial.user_attrs[RUNG_KEY]
        attrs[CANDIDATE_KEY] = trial.user_attrs[CANDIDATE_KEY]
    if not isinstance(trial, FrozenTrial):  # a live trial of this run: what storage holds
        trial = trial.storage.get_trial(trial._trial_id)
    params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {})
    if params:
        study.enqueue_trial(params, user_attrs=attrs)


def finished_rows(sweep_study: SweepStudy) -> list[dict[str, Any]]:
    """Our trial-row fields for every finished Optuna trial, as Optuna recorded them.

    Keyword arguments of :func:`storage.repository.upsert_trial` (without ``sweep_id``).
    """
    names = sweep_study.spec.objective_names
    needed = set(sweep_study.space.param_names)
    rows = []
    for trial in sweep_study.study.get_trials(deepcopy=False, states=_FINISHED):
        if not needed <= set(trial.params):
            continue  # asked but never given its ratios: nothing ran
        candidate = sweep_study.space.candidate(trial.params)
        attrs = trial.user_attrs
        state = STATE_NAMES[trial.state.name]
        rows.append(
            {
                "number": trial.number,
                "weights": candidate.weights,
                "alpha": candidate.alpha,
                "state": state,
                "seed_kind": attrs.get("seed_kind"),
                "objectives": dict(zip(names, trial.values, strict=True))
                if state == "complete" and trial.values
                else None,
                "stability": _prefixed(attrs, "stability/") or None,
                "benchmarks": _prefixed(attrs, "benchmarks/") or None,
                "error": attrs.get("fail_reason"),
                "started_at": _aware(trial.datetime_start),
                "finished_at": _aware(trial.datetime_complete),
                "node": attrs.get("placement/node"),
                "fidelity": stored_fidelity(attrs),
            }
        )
    return rows


def fidelity_attrs(rung: Rung, candidate: int) -> dict[str, int]:
    """The Optuna user attributes (and our trial row's ``fidelity``) of a probe at ``rung``."""
    return {
        RUNG_KEY: rung.index,
        "probe_steps": rung.steps,
        "probe_repeats": rung.repeats,
        CANDIDATE_KEY: int(candidate),
    }


def stored_fidelity(attrs: Mapping[str, Any]) -> dict[str, int] | None:
    """Our trial row's ``fidelity`` from an Optuna trial's user attributes (None without)."""
    if RUNG_KEY not in attrs:
        return None
    return {
        "rung": int(attrs[RUNG_KEY]),
        "steps": int(attrs["probe_steps"]),
        "repeats": int(attrs["probe_repeats"]),
        "candidate": int(attrs[CANDIDATE_KEY]),
    }


def _counted(trial: FrozenTrial) -> bool:
    return trial.state in _FINISHED and not trial.user_attrs.get(INTERRUPTED_ATTR)


def ladder_probes(sweep_study: SweepStudy) -> list[Probe]:
    """The study's counted probe runs as :func:`sweeps.fidelity.next_rung` reads them."""
    needed = set(sweep_study.space.param_names)
    probes = []
    for trial in sweep_study.study.get_trials(deepcopy=False):
        if not _counted(trial) or not needed <= set(trial.params):
            continue
        attrs = trial.user_attrs
        values = None
        if trial.state is TrialState.COMPLETE and trial.values:
            values = tuple(float(v) for v in trial.values)
        feasible = all(v <= 0 for v in constraints_from_result(attrs).values())
        rung = int(attrs.get(RUNG_KEY, 0))
        candidate = int(attrs.get(CANDIDATE_KEY, trial.number))
        probes.append(Probe(trial.number, candidate, rung, values, feasible))
    return probes


def ladder_plan(sweep_study: SweepStudy) -> RungPlan | None:
    """The rung the sweep is at, derived from its finished trials (None: the ladder is done).

    Without successive halving the ladder is one rung of ``search.n_trials`` probes.
    """
    spec = sweep_study.spec
    return next_rung(
        ladder_probes(sweep_study),
        spec.rungs(),
        spec.directions,
        candidates=spec.search.n_trials,
        reference=spec.reference_point,
    )


def next_stage(sweep_study: SweepStudy) -> RungPlan | None:
    """:func:`ladder_plan`, with the rung's promoted candidates not yet probed nor waiting
    enqueued (fixed ratios, their rung and candidate as user attributes): calling it again
    enqueues nothing twice."""
    study = sweep_study.study
    plan = ladder_plan(sweep_study)
    if plan is None or plan.rung.index == 0:
        return plan
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    waiting = {
        t.user_attrs.get(CANDIDATE_KEY)
        for t in trials.values()
        if t.state is TrialState.WAITING and t.user_attrs.get(RUNG_KEY) == plan.rung.index
    }
    for candidate in plan.missing:
        if candidate in waiting:
            continue
        source = trials[candidate]
        attrs: dict[str, Any] = {RUNG_KEY: plan.rung.index, CANDIDATE_KEY: candidate}
        if source.user_attrs.get("seed_kind"):
            attrs["seed_kind"] = source.user_attrs["seed_kind"]
        study.enqueue_trial(dict(source.params), user_attrs=attrs)
    return plan


def _aware(moment: datetime | None) -> datetime | None:
    # Optuna records naive local times.
    return None if moment is None else moment.astimezone(UTC)


def _prefixed(attrs: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in attrs.items() if key.startswith(prefix)}


def decorate_trial(
    ot_trial: optuna.Trial, result: Mapping[str, Any] | None, *, verdict: TrialVerdict
) -> None:
    """A complete trial's constraints (read by the samplers and ``study.best_trials``, see
    :mod:`sweeps.constraints`), then its metrics as user attributes for optuna-dashboard."""
    if verdict.state is TrialState.COMPLETE:
        set_trial_constraints(ot_trial, constraints_from_result(result or {}))
    set_user_attrs(
        ot_trial,
        {
            key: value
            for key, value in (result or {}).items()
            if key.startswith(DASHBOARD_PREFIXES)
            and (isinstance(value, int | float | str | bool) or value is None)
        },
    )


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """Set a running trial's user attributes in one storage transaction.

    ``Trial.set_user_attr`` commits each attribute on its own: some 30 transactions per trial
    on the driver, between a trial's end and the next one's start. On the RDB storage they
    go through Optuna's own per-attribute writer in one session (Optuna internals, pinned in
    ``constraints.txt``; ``tests/sweeps/test_study.py`` checks them); elsewhere one by one.
    """
    from optuna.storages import RDBStorage

    backend = getattr(trial.storage, "_backend", trial.storage)
    if not isinstance(backend, RDBStorage):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb.models import TrialUserAttributeModel
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(
                session, TrialUserAttributeModel, trial._trial_id, key, value
            )


def upload_trial_curves(
    study: optuna.Study, artifact_store: FileSystemArtifactStore, record: TrialRecord
) -> None:
    """A finished trial's curve PNG, as a study artifact ``trial-<n>-curves.png``.

    Rendered after the trial was told, off the driver (by the recorder): an artifact of the
    trial itself would have to be attached before its tell, delaying the next trial. Optuna
    refuses attributes of a finished trial, so the study holds it, named by the trial.
    """
    from optuna.artifacts import upload_artifact

    from sweeps.reports import trial_curves_figure

    with tempfile.TemporaryDirectory(prefix="bai-sweep-curve-") as tmp:
        path = Path(tmp) / curves_filename(record.number)
        path.write_bytes(trial_curves_figure(record))
        retry_storage(
            lambda: upload_artifact(
                artifact_store=artifact_store, file_path=str(path), study_or_trial=study
            ),
            "curve artifact",
        )


def curves_missing(study: optuna.Study, artifact_store: FileSystemArtifactStore) -> set[int]:
    """Finished trials without a stored curve artifact.

    A kill between a trial's tell and its render loses the curve; Optuna's ``upload_artifact``
    records the artifact's meta before it writes the file, so a kill in between leaves a meta
    whose file is absent: that counts as missing too.
    """
    from optuna.artifacts import get_all_artifact_meta

    have = {
        meta.filename
        for meta in get_all_artifact_meta(study)
        if _artifact_stored(artifact_store, meta.artifact_id)
    }
    return {
        trial.number
        for trial in study.get_trials(deepcopy=False, states=_FINISHED)
        if curves_filename(trial.number) not in have
    }


def _artifact_stored(artifact_store: FileSystemArtifactStore, artifact_id: str) -> bool:
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        artifact_store.open_reader(artifact_id).close()
    except ArtifactNotFound:
        return False
    return True


def curves_filename(number: int) -> str:
    """File name of trial ``number``'s curve artifact."""
    return f"trial-{number}-curves.png"
