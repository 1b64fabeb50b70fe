"""The Ray Tune room of a sweep: the trainable, the Tuner, and its links to the live run.

The Tune driver runs in the calling process (a local Ray, or a cluster joined by its GCS
address ``host:port``): Tune's callbacks, stopper and the searcher's hook call a
:class:`TrialSink` directly, with no module-level registry. Tune pickles its configuration
(``tuner.pkl``); those links then drop the sink, and a copy that is ever called elsewhere
raises instead of silently doing nothing. Ray Client (``ray://``) would run the whole Tuner
as a remote task on the head, where nothing of this run exists: it is refused before any work
starts (:func:`check_ray_address`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ray import tune

from sweeps._optuna_search import ERROR_KEY, FINAL_KEY, BaiOptunaSearch, TrialVerdict
from sweeps._ray_mode import check_ray_address
from sweeps._study import CANDIDATE_KEY, RUNG_KEY, fidelity_attrs, set_user_attrs
from sweeps.exceptions import SweepRunError
from sweeps.fidelity import Rung, spec_at
from sweeps.search_space import Candidate, SearchSpace
from sweeps.spec import SweepSpec

logger = logging.getLogger(__name__)

#: Result key of one probe step in a trial's per-step reports.
STEP_KEY = "probe_step"
#: Result key of where a trial runs: ``{"node": "<ip>/<node id>", "gpu_ids": "0,1"}``.
PLACEMENT_KEY = "placement"


def ensure_ray(address: str | None) -> bool:
    """Join the cluster at ``address`` or start a local Ray; True if this call started Ray."""
    import ray

    check_ray_address(address)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return True


def configure_tune_environment() -> None:
    """Environment Tune reads when a Tuner starts."""
    # Per-step reports do not carry the objectives; Tune's strict check would reject them.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # The recorder writes everything; Tune's CSV/JSON/TensorBoard loggers only cost time.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Without those loggers Tune's result grid cannot read metrics back, and says so; the
    # sweep's results live in the database.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


# --- the trial as Ray Tune runs it ------------------------------------------------------


def _placement() -> dict[str, str]:
    import ray

    context = ray.get_runtime_context()
    return {
        "node": f"{ray.util.get_node_ip_address()}/{context.get_node_id()}",
        "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
    }


def missing_paths(spec: SweepSpec) -> list[str]:
    """The spec's local paths (absolute ones: hub ids are not paths) absent on this node."""
    models = spec.models
    paths = [models.base, *models.sft, models.prompts]
    if models.reward is not None:
        paths.append(models.reward)
    return [path for path in paths if os.path.isabs(path) and not os.path.exists(path)]


def tune_trainable(
    config: dict[str, Any], *, spec_json: dict[str, Any], trust_remote_code: bool
) -> None:
    """Ray Tune function trainable: one trial, per-step and final results via ``tune.report``."""
    from sweeps.trial import run_trial

    spec = rung_spec(SweepSpec.model_validate(spec_json), config.get(RUNG_KEY))
    candidate = Candidate(tuple(float(w) for w in config["weights"]), float(config["alpha"]))
    placement = _placement()
    missing = missing_paths(spec)
    if missing:
        message = (
            f"SweepRunError: {', '.join(missing)} not found on Ray node {placement['node']}: "
            "every node needs the same models and data paths as the worker"
        )
        tune.report({ERROR_KEY: message, PLACEMENT_KEY: placement})
        raise SweepRunError(message)

    def report_step(step: Any) -> None:
        tune.report({STEP_KEY: step.model_dump(), PLACEMENT_KEY: placement})

    try:
        outcome = run_trial(
            spec, candidate, on_step=report_step, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        tune.report({ERROR_KEY: f"{type(exc).__name__}: {exc}", PLACEMENT_KEY: placement})
        raise
    tune.report(
        {
            FINAL_KEY: True,
            "objectives": outcome.objectives,
            "stability": outcome.stability,
            "benchmarks": outcome.benchmarks,
            "probe": outcome.probe,
            "timings": outcome.timings,
            PLACEMENT_KEY: placement,
        }
    )


def rung_spec(spec: SweepSpec, rung: int | None) -> SweepSpec:
    """The spec a trial of ``rung`` runs with (``spec`` itself without successive halving)."""
    if rung is None or not spec.fidelity.enabled:
        return spec
    return spec_at(spec, spec.rungs()[rung])


class SpaceFunction:
    """Optuna define-by-run space: samples a candidate, returns weights and seed kind too.

    With successive halving (``rungs``) the trial's rung comes from its enqueued user
    attributes (a promoted candidate) or is 0 (sampled or seeded); the rung, its probe steps
    and seeds and the candidate (the rung-0 trial's number) are set as user attributes and
    passed to the trainable (:data:`RUNG_KEY`).
    """

    def __init__(self, space: SearchSpace, rungs: Sequence[Rung] | None = None) -> None:
        self.space = space
        self.rungs = list(rungs) if rungs else None

    def __call__(self, trial: Any) -> dict[str, Any]:
        candidate = self.space.suggest(trial)
        attrs: dict[str, Any] = {"weights": list(candidate.weights)}
        config = {
            "weights": list(candidate.weights),
            "seed_kind": trial.user_attrs.get("seed_kind"),
        }
        if self.rungs is not None:
            rung = self.rungs[int(trial.user_attrs.get(RUNG_KEY, 0))]
            number = int(trial.user_attrs.get(CANDIDATE_KEY, trial.number))
            attrs.update(fidelity_attrs(rung, number))
            config.update({RUNG_KEY: rung.index, CANDIDATE_KEY: number})
        set_user_attrs(trial, attrs)
        return config


# --- the links from Tune to the live run ----------------------------------------------


class TrialSink(Protocol):
    """What the Tune driver reports to (the live run)."""

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None: ...

    def trial_result(self, trial_id: str, result: Mapping[str, Any]) -> None: ...

    def trial_finished(
        self, trial_id: str, result: Mapping[str, Any], error_text: str | None
    ) -> None: ...

    def before_tell(
        self,
        trial_id: str,
        ot_trial: Any,
        verdict: TrialVerdict,
        result: Mapping[str, Any] | None,
    ) -> None: ...

    def should_stop(self) -> bool: ...


class _SinkLink:
    """Holds the live sink; a pickled copy holds none and raises if it is ever used."""

    def __init__(self, sink: TrialSink) -> None:
        self._sink: TrialSink | None = sink

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sink": None}

    @property
    def sink(self) -> TrialSink:
        if self._sink is None:
            raise SweepRunError(
                "a copy of the sweep's Tune hooks runs away from its recorder (in another "
                f"process, pid {os.getpid()}): nothing of this trial could be recorded"
            )
        return self._sink


def error_text(tune_trial: Any) -> str | None:
    """The last line of a Tune trial's error (the exception and its message)."""
    error_file = getattr(tune_trial, "error_file", None)
    if not error_file or not os.path.isfile(error_file):
        return None
    try:
        lines = [line.strip() for line in Path(error_file).read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


class _SinkCallback(_SinkLink, tune.Callback):
    """Tune callback (runs in the driver): trial events to the sink."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.trial_started(trial.trial_id, trial.config)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.sink.trial_result(trial.trial_id, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.trial_finished(trial.trial_id, trial.last_result or {}, error_text(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.trial_finished(trial.trial_id, trial.last_result or {}, error_text(trial))


class _SinkStopper(_SinkLink, tune.Stopper):
    """Stops the whole Tuner once the sink says so (cancel, shutdown, lost lease)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.sink.should_stop()


class SinkBeforeTell(_SinkLink):
    """The searcher's ``before_tell`` hook, forwarded to the sink."""

    def __call__(
        self,
        trial_id: str,
        ot_trial: Any,
        verdict: TrialVerdict,
        result: Mapping[str, Any] | None,
    ) -> None:
        self.sink.before_tell(trial_id, ot_trial, verdict, result)


def run_tuner(
    *,
    spec: SweepSpec,
    searcher: BaiOptunaSearch,
    sink: TrialSink,
    num_samples: int,
    results_dir: Path,
    name: str,
    trust_remote_code: bool,
) -> None:
    """Run ``num_samples`` trials through Tune (Ray must be initialised)."""
    configure_tune_environment()
    resources: dict[str, float] = {"cpu": spec.resources.cpus_per_trial}
    if spec.resources.gpus_per_trial:
        # Fractions pack several trials on one GPU; Ray sets CUDA_VISIBLE_DEVICES per trial.
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
            num_samples=num_samples,
            max_concurrent_trials=spec.resources.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%S}",
            storage_path=str(results_dir),
            callbacks=[_SinkCallback(sink)],
            stop=_SinkStopper(sink),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.trial_id}"
