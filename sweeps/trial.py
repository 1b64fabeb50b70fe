"""One sweep trial as a plain function: build the BAI actor, probe it, benchmark it, score it.

Nothing here knows about Ray, Optuna or the database (the runner wraps :func:`run_trial`).
The expensive inputs (the stacked merge inputs, the tokenizer, the reward model, the prompts
and the loaded benchmark tasks) are loaded once per process by :func:`load_trial_inputs` and
reused by every later trial with the same paths; actors are built in memory, never written.

The ``benchmark`` objective scores the BAI *initialisation* (a fresh actor built from the same
ratios); ``benchmark_after`` scores the policy each probe trained (measured only when it is an
objective). A candidate is probed on ``probe.repeats`` seeds: every objective is the mean over
the seeds with a confidence interval (:mod:`sweeps.statistics`), and the per-seed values are
kept in the stored stability record (``stability["seeds"]`` and
``stability["objective_stats"]``). Only the first seed's per-step curves are streamed and
stored. A diverged probe scores stability 0 (flagged ``diverged``) instead of failing the trial,
so the sampler learns that the region is unstable.

*Forgetting* is the mean score drop versus the base model on ``benchmarks.retention_tasks``
(the knowledge tasks by default): the base is scored once per process with the trial inputs,
the initial actor's drop is stored as ``benchmarks["forgetting_init"]`` and, when the trained
policies are benchmarked (``benchmark_after`` or ``forgetting`` is an objective), each seed's
drop after RL in ``benchmarks["after"]`` and their mean as the ``forgetting`` objective.
*Correctness retention* (the share of correct rollout answers over the probe's last window
against its first) is stored with each seed's stability when every probe prompt has a known
answer (the task family's K and R questions, see :func:`grade_task_family`), whatever the
reward; with other prompts it is not recorded.

*Forecasts* (:mod:`sweeps.forecast`): each seed's reward and length curves are fitted with a
saturating curve (``stability["reward_forecast"]``, ``stability["length_forecast"]``, per seed
in ``stability["seeds"]``); the ``reward_asymptote`` and ``length_at_horizon`` objectives take
each seed's forecast, or its observed last-window mean when the fit was refused (flagged
``fallback`` with the reason).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeps.exceptions import SweepsError
from sweeps.forecast import FORECAST_OBJECTIVES
from sweeps.search_space import Candidate
from sweeps.spec import OBJECTIVE_BOUNDS, SweepSpec

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from evaluators.benchmarks import BenchmarkResult, BenchmarkRunner
    from evaluators.probe import StepMetrics
    from evaluators.rewards import RewardFunction
    from sweeps.merge import MergeInputs

__all__ = [
    "REFERENCE_PROMPTS",
    "TrialFailedError",
    "TrialInputs",
    "TrialOutcome",
    "benchmark_stderr",
    "clear_trial_inputs",
    "grade_task_family",
    "load_trial_inputs",
    "model_reference_length",
    "objective_values",
    "parents_reference_length",
    "run_trial",
]


class TrialFailedError(SweepsError):
    """The trial failed: no objective values could be measured."""


@dataclass
class TrialInputs:
    """What every trial of a sweep shares, loaded once per process."""

    merge_inputs: MergeInputs
    tokenizer: PreTrainedTokenizerBase
    reward: nn.Module | RewardFunction
    prompts: list[str]
    benchmark_runner: BenchmarkRunner
    load_seconds: float
    reference_length: float | None = None
    """Length of full ``length_retention`` (None: each actor's own initial length)."""
    base_benchmark: BenchmarkResult | None = None
    """The base model's scores (measured when there are retention tasks)."""


@dataclass(frozen=True)
class TrialOutcome:
    """What one trial measured."""

    candidate: Candidate
    objectives: dict[str, float]
    stability: dict[str, Any]
    benchmarks: dict[str, Any]
    probe: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    """The spec's constraints by name, ``<= 0`` when met (see :mod:`sweeps.constraints`)."""


_cache_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], TrialInputs] | None = None


def _inputs_key(spec: SweepSpec, device: str, trust_remote_code: bool) -> tuple[Any, ...]:
    models = spec.models
    return (
        models.base,
        tuple(models.sft),
        models.reward,
        models.reward_rule,
        models.prompts,
        models.tokenizer_source,
        spec.prompt.model_dump_json(),
        spec.benchmarks.model_dump_json(),
        # The reference length depends on these two.
        spec.probe.length_reference,
        spec.probe.response_length,
        device,
        trust_remote_code,
    )


def _merge_device(spec: SweepSpec) -> str:
    import torch

    wants_gpu = spec.resources.gpus_per_trial > 0 or spec.probe.device == "cuda"
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def load_trial_inputs(spec: SweepSpec, *, trust_remote_code: bool = False) -> TrialInputs:
    """The shared inputs of ``spec``'s trials, from this process's cache when possible.

    Only the most recent inputs are kept: a process that moves on to another sweep frees the
    previous sweep's tensors.
    """
    global _cached
    device = _merge_device(spec)
    key = _inputs_key(spec, device, trust_remote_code)
    with _cache_lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        _cached = None
        inputs = _load(spec, device=device, trust_remote_code=trust_remote_code)
        _cached = (key, inputs)
        return inputs


def clear_trial_inputs() -> None:
    """Forget the cached inputs (frees their memory)."""
    global _cached
    with _cache_lock:
        _cached = None


def _load(spec: SweepSpec, *, device: str, trust_remote_code: bool) -> TrialInputs:
    from transformers import AutoTokenizer

    from evaluators.benchmarks import BenchmarkRunner
    from evaluators.probe import load_prompts
    from evaluators.rewards import check_reward_vocabulary, load_reward_model
    from sweeps.merge import load_merge_inputs

    started = time.perf_counter()
    models = spec.models
    merge_inputs = load_merge_inputs(
        models.base,
        models.sft,
        device=device,
        tokenizer_source=models.tokenizer_source,
        trust_remote_code=trust_remote_code,
    )
    # A token-matched vocabulary (tokenizer_source) comes with its own tokenizer.
    tokenizer = merge_inputs.tokenizer or AutoTokenizer.from_pretrained(
        models.base, trust_remote_code=trust_remote_code
    )
    if models.reward is not None:
        reward: Any = load_reward_model(models.reward, trust_remote_code=trust_remote_code)
        check_reward_vocabulary(reward, tokenizer)
    else:
        from evaluators.reward_rules import REWARD_RULES

        # The spec validator requires a reward model or a rule.
        reward = REWARD_RULES[str(models.reward_rule)]
    prompts = load_prompts(models.prompts)
    runner = BenchmarkRunner(spec.benchmarks, tokenizer, spec.prompt)
    reference = None
    if spec.probe.length_reference == "parents":
        reference = parents_reference_length(spec, merge_inputs, tokenizer, prompts)
    elif spec.probe.reference_model is not None:
        reference = model_reference_length(
            spec,
            spec.probe.reference_model,
            prompts,
            device=device,
            trust_remote_code=trust_remote_code,
        )
    base_benchmark = None
    if spec.benchmarks.retention_tasks:
        # alpha = 1 is the base model itself (alpha weights the base); scored once here.
        base = merge_inputs.build_actor(
            list(spec.search_space().equal_weights()), 1.0, normalize=True
        )
        base_benchmark = runner.score(base)
        del base
    return TrialInputs(
        merge_inputs=merge_inputs,
        tokenizer=tokenizer,
        reward=reward,
        prompts=prompts,
        benchmark_runner=runner,
        load_seconds=time.perf_counter() - started,
        reference_length=reference,
        base_benchmark=base_benchmark,
    )


REFERENCE_PROMPTS = 64
"""Probe prompts the parents' greedy lengths are measured on (the first ones)."""


def parents_reference_length(
    spec: SweepSpec,
    merge_inputs: MergeInputs,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
) -> float:
    """The longest greedy response length among the SFT parents on the probe prompts.

    Each parent is rebuilt from the merge inputs (its one-hot weight at alpha 0) and measured
    with :func:`evaluators.probe.greedy_length` at the probe's ``response_length``.
    """
    from evaluators.probe import greedy_length

    count = len(spec.models.sft)
    lengths = []
    for index in range(count):
        weights = [1.0 if k == index else 0.0 for k in range(count)]
        parent = merge_inputs.build_actor(weights, 0.0, normalize=True)
        lengths.append(
            greedy_length(
                parent,
                tokenizer,
                list(prompts[:REFERENCE_PROMPTS]),
                max_new_tokens=spec.probe.response_length,
                prompt=spec.prompt,
            )
        )
        del parent
    return max(lengths)


def grade_task_family(prompt: str, response: str) -> bool | None:
    """Whether ``response`` answers the task-family question in ``prompt`` right (None: the
    prompt is not a K or R question, so its answer is unknown)."""
    from evaluators.task_family import expected_answer, parse_answer

    expected = expected_answer(prompt)
    return None if expected is None else parse_answer(response) == expected


def model_reference_length(
    spec: SweepSpec,
    path: str,
    prompts: Sequence[str],
    *,
    device: str,
    trust_remote_code: bool = False,
) -> float:
    """The greedy response length of the reference model at ``path`` on the probe prompts.

    Measured like :func:`parents_reference_length` (the first :data:`REFERENCE_PROMPTS`
    prompts, the probe's ``response_length`` and prompt format), with the model's own tokenizer:
    the pre-flight requires it to be the actor's, so the lengths count the same tokens.
    """
    from evaluators.benchmarks import load_checkpoint
    from evaluators.probe import greedy_length

    model, tokenizer = load_checkpoint(path, device=device, trust_remote_code=trust_remote_code)
    try:
        return greedy_length(
            model,
            tokenizer,
            list(prompts[:REFERENCE_PROMPTS]),
            max_new_tokens=spec.probe.response_length,
            prompt=spec.prompt,
        )
    finally:
        del model


def objective_values(
    names: Sequence[str],
    stability: dict[str, Any],
    benchmark: float,
    steps: Sequence[Any],
    benchmark_after: float | None = None,
    forgetting: float | None = None,
) -> dict[str, float]:
    """The objective values of one probe.

    ``stability`` is the probe's combined stability score in [0, 1], ``benchmark`` the
    weighted mean of the selection tasks on the initial actor, ``benchmark_after`` the same on
    the policy the probe trained, ``reward_gain`` the last finite update's mean reward minus the
    first's (the untrained actor's), ``kl`` the KL to the reference at the last finite update,
    ``forgetting`` the trained policy's mean score drop versus the base on the retention
    tasks, and ``reward_asymptote`` / ``length_at_horizon`` the ``value`` of the probe's reward
    and length forecasts in ``stability`` (the forecast, or the observed value on a fallback).
    """
    finite = [step for step in steps if not step.non_finite_fields()]
    available = {
        "stability": float(stability["stability"]),
        "benchmark": float(benchmark),
        "benchmark_after": math.nan if benchmark_after is None else float(benchmark_after),
        "reward_gain": (
            float(finite[-1].reward_mean - finite[0].reward_mean) if finite else math.nan
        ),
        "kl": float(stability["kl_final"]),
        "forgetting": math.nan if forgetting is None else float(forgetting),
        **{
            name: _forecast_value(stability.get(key))
            for name, (key, _) in FORECAST_OBJECTIVES.items()
        },
    }
    values = {name: available[name] for name in names}
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise TrialFailedError(f"objective {', '.join(bad)} is not finite")
    return values


def _forecast_value(forecast: dict[str, Any] | None) -> float:
    """A seed's forecast objective value (NaN without a forecast)."""
    value = (forecast or {}).get("value")
    return math.nan if value is None else float(value)


@dataclass
class _SeedRun:
    seed: int
    stability: dict[str, Any]
    objectives: dict[str, float]
    probe: dict[str, Any]
    steps: list[StepMetrics]
    benchmark_after: BenchmarkResult | None
    after_score: float | None = None
    forgetting: float | None = None


def _probe_seed(
    spec: SweepSpec,
    inputs: TrialInputs,
    candidate: Candidate,
    seed: int,
    benchmark: float,
    on_step: Callable[[StepMetrics], None] | None,
    trust_remote_code: bool,
) -> _SeedRun:
    from evaluators.benchmarks import forgetting
    from evaluators.probe import ProbeDivergedError, run_probe
    from evaluators.stability import correctness_retention
    from sweeps.forecast import fit_length_curve, fit_reward_curve

    names = [o.name for o in spec.objectives]
    config = spec.probe.model_copy(update={"seed": seed})
    actor = inputs.merge_inputs.build_actor(
        list(candidate.weights), candidate.alpha, normalize=True
    )
    try:
        try:
            probe = run_probe(
                actor,
                inputs.tokenizer,
                inputs.reward,
                inputs.prompts,
                config,
                on_step,
                prompt=spec.prompt,
                trust_remote_code=trust_remote_code,
                reference_length=inputs.reference_length,
            )
        except ProbeDivergedError as exc:
            probe = exc.result
        if probe.stability is None:
            raise TrialFailedError(f"seed {seed}: the probe measured no finite step")
        after = None
        after_score: float | None = None
        after_forgetting: float | None = None
        retention = spec.benchmarks.retention_tasks
        if "benchmark_after" in names or "forgetting" in names:
            # A diverged policy has non-finite weights: it answers nothing.
            if probe.stability.diverged:
                after_score = 0.0
                if inputs.base_benchmark is not None:
                    base = inputs.base_benchmark.per_task
                    after_forgetting = sum(base[t].score for t in retention) / len(retention)
            else:
                after = inputs.benchmark_runner.score(actor)
                after_score = after.benchmark
                if inputs.base_benchmark is not None:
                    after_forgetting = forgetting(after, inputs.base_benchmark, retention)
    finally:
        del actor
    stability = probe.stability.model_dump()
    correctness = correctness_retention(
        probe.responses, grade_task_family, window=spec.probe.stability_window
    )
    if correctness is not None:
        stability.update(correctness)
    numbers = [step.step for step in probe.steps]
    window = spec.probe.stability_window
    stability["reward_forecast"] = fit_reward_curve(
        numbers, [step.reward_mean for step in probe.steps], window=window
    ).to_json()
    stability["length_forecast"] = fit_length_curve(
        numbers,
        [step.length_mean for step in probe.steps],
        horizon=spec.probe.resolved_forecast_horizon,
        max_length=spec.probe.response_length,
        window=window,
    ).to_json()
    return _SeedRun(
        seed=seed,
        stability=stability,
        objectives=objective_values(
            names, stability, benchmark, probe.steps, after_score, after_forgetting
        ),
        probe={
            "seed": seed,
            "stop_reason": probe.stop_reason.value,
            "partial": probe.partial,
            "detail": probe.detail,
            "steps": len(probe.steps),
            "elapsed_s": probe.elapsed_seconds,
        },
        steps=probe.steps,
        benchmark_after=after,
        after_score=after_score,
        forgetting=after_forgetting,
    )


def benchmark_stderr(result: BenchmarkResult) -> float | None:
    """Standard error of ``result.benchmark`` from lm-eval's per-task stderrs (None if any is
    missing): the selection tasks' weighted mean, its errors added in quadrature. A share-correct
    task's error is floored by Agresti-Coull's, so a perfect score still has an interval."""
    from evaluators.benchmarks import task_stderr

    total = 0.0
    weights = 0.0
    terms = []
    for task in result.per_task.values():
        if task.weight is None:
            continue
        se = task_stderr(task)
        if se is None:
            return None
        terms.append((task.weight, se))
        weights += task.weight
    if not terms or weights <= 0:
        return None
    for weight, se in terms:
        total += (weight / weights * se) ** 2
    return math.sqrt(total)


def _rms(errors: Sequence[float | None]) -> float | None:
    """The root mean square of the seeds' standard errors (lm-eval's: the same documents for
    every seed; or each fit's), None unless every seed has one."""
    if not errors or any(se is None for se in errors):
        return None
    return math.sqrt(sum(se**2 for se in errors if se is not None) / len(errors))


def _combine_stability(seeds: Sequence[_SeedRun]) -> dict[str, Any]:
    """Per-field mean (numbers), any (flags) or per-seed list (the rest) over the seeds.

    A field some seeds lack (correctness retention when a seed's rollouts met a prompt without
    a known answer) is left out: the per-seed records keep it.
    """
    combined: dict[str, Any] = {}
    for key in dict.fromkeys(k for run in seeds for k in run.stability):
        if any(key not in run.stability for run in seeds):
            continue
        values = [run.stability[key] for run in seeds]
        if all(isinstance(v, bool) for v in values):
            combined[key] = any(values)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            combined[key] = sum(values) / len(values)
        else:
            combined[key] = values
    return combined


def _combine_forecasts(forecasts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' forecasts of one metric: the mean and interval, over the seeds with a fit, of
    the fitted asymptote, efficiency and (with a horizon) the value at the horizon (None when no
    seed has a fit); whether some seed fell back to its observed value, and why."""
    from sweeps.statistics import mean_interval

    fitted = [f for f in forecasts if f.get("asymptote") is not None]

    def interval(key: str) -> dict[str, Any] | None:
        values = [float(f[key]) for f in fitted if f.get(key) is not None]
        return mean_interval(values).to_json() if values else None

    combined: dict[str, Any] = {
        "asymptote": interval("asymptote"),
        "efficiency": interval("efficiency"),
        "seeds_fitted": len(fitted),
        "seeds": len(forecasts),
        "fallback": len(fitted) < len(forecasts),
        "reasons": [f["reason"] for f in forecasts if f.get("reason")],
    }
    horizon = forecasts[0].get("horizon") if forecasts else None
    if horizon is not None:
        combined["horizon"] = horizon
        combined["at_horizon"] = interval("at_horizon")
        # Each fit's own error: the interval above already holds it through the seeds' spread.
        combined["at_horizon_se"] = _rms([f.get("at_horizon_se") for f in fitted])
    return combined


def run_trial(
    spec: SweepSpec,
    candidate: Candidate,
    *,
    on_step: Callable[[StepMetrics], None] | None = None,
    inputs: TrialInputs | None = None,
    trust_remote_code: bool = False,
) -> TrialOutcome:
    """Run one trial of ``spec`` at ``candidate``: ``spec.probe.repeats`` probes, one benchmark.

    Args:
        on_step: Called with the first seed's probe metrics after every update (live progress).
        inputs: Pre-loaded inputs (default: :func:`load_trial_inputs`).

    Raises:
        TrialFailedError: A probe diverged at its first update or an objective is not finite.
        SweepsError, EvaluatorError: Unusable checkpoints, prompts, reward or tasks.
    """
    from evaluators.benchmarks import forgetting, forgetting_stderr
    from sweeps.constraints import constraint_values
    from sweeps.statistics import mean_interval

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if inputs is None:
        inputs = load_trial_inputs(spec, trust_remote_code=trust_remote_code)
        timings["load_s"] = time.perf_counter() - started
    weights, alpha = list(candidate.weights), candidate.alpha

    mark = time.perf_counter()
    initial_actor = inputs.merge_inputs.build_actor(weights, alpha, normalize=True)
    timings["merge_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    benchmark = inputs.benchmark_runner.score(initial_actor)
    del initial_actor
    timings["benchmark_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    seeds = [
        _probe_seed(
            spec,
            inputs,
            candidate,
            spec.probe.seed + repeat,
            benchmark.benchmark,
            on_step if repeat == 0 else None,
            trust_remote_code,
        )
        for repeat in range(spec.probe.repeats)
    ]
    timings["probe_s"] = time.perf_counter() - mark

    init_se = benchmark_stderr(benchmark)
    base = inputs.base_benchmark
    retention = spec.benchmarks.retention_tasks
    after = [run.benchmark_after for run in seeds if run.benchmark_after is not None]
    shared_se: dict[str, float | None] = {
        "benchmark": init_se,
        "benchmark_after": _rms([benchmark_stderr(result) for result in after]),
        "forgetting": (
            _rms([forgetting_stderr(result, base, retention) for result in after])
            if base is not None
            else None
        ),
    }
    objective_stats = {}
    for name in seeds[0].objectives:
        values = [run.objectives[name] for run in seeds]
        interval = mean_interval(
            values, measurement_se=shared_se.get(name), bounds=OBJECTIVE_BOUNDS.get(name)
        )
        objective_stats[name] = {**interval.to_json(), "values": values}
    objectives = {name: stats["mean"] for name, stats in objective_stats.items()}

    stability = _combine_stability(seeds)
    for key, _ in FORECAST_OBJECTIVES.values():
        stability[key] = _combine_forecasts([run.stability[key] for run in seeds])
    stability["seeds"] = [{"seed": run.seed, **run.stability} for run in seeds]
    stability["objective_stats"] = objective_stats
    constraints = constraint_values(
        spec.constraints,
        collapse_threshold=spec.probe.collapse_threshold,
        seeds=stability["seeds"],
        kl_final=float(stability["kl_final"]),
        benchmark=benchmark.benchmark,
    )
    stability["constraints"] = constraints
    warning = spec.probe.short_window_warning()
    if warning:
        stability["warnings"] = [warning]
    first = seeds[0]
    benchmarks: dict[str, Any] = {
        "benchmark": benchmark.benchmark,
        "benchmark_stderr": init_se,
        "selection": benchmark.selection_scores,
        "report": benchmark.report_tasks,
        "limit": benchmark.limit,
        # How the models saw their prompts (the probe and lm-eval share it).
        "prompt_format": benchmark.prompt_format,
        "system_prompt": spec.prompt.system,
        "tokenizer_source": spec.models.tokenizer_source,
    }
    if base is not None:
        benchmarks["retention_tasks"] = retention
        benchmarks["base"] = {name: base.per_task[name].score for name in base.per_task}
        benchmarks["forgetting_init"] = forgetting(benchmark, base, retention)
        benchmarks["forgetting_init_stderr"] = forgetting_stderr(benchmark, base, retention)
    if any(run.after_score is not None for run in seeds):
        benchmarks["after"] = [
            {
                "seed": run.seed,
                "benchmark": run.after_score,
                "forgetting": run.forgetting,
                "benchmark_stderr": (
                    benchmark_stderr(run.benchmark_after) if run.benchmark_after else None
                ),
                "selection": run.benchmark_after.selection_scores if run.benchmark_after else {},
                "report": run.benchmark_after.report_tasks if run.benchmark_after else {},
            }
            for run in seeds
        ]
    timings["total_s"] = time.perf_counter() - started
    return TrialOutcome(
        candidate=candidate,
        objectives=objectives,
        stability=stability,
        benchmarks=benchmarks,
        probe={
            **first.probe,
            "repeats": len(seeds),
            "seeds": [run.probe for run in seeds],
            "reference_length": inputs.reference_length,
            "prompt_format": benchmark.prompt_format,
            "precision": spec.probe.precision,
        },
        steps=[step.model_dump() for step in first.steps],
        timings=timings,
        constraints=constraints,
    )
