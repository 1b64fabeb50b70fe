"""One sweep trial as a plain function: build the BAI actor, probe it, benchmark it, score it.

Nothing here knows about Ray, Optuna or the database (the runner wraps :func:`run_trial`).
The expensive inputs (the stacked merge inputs, the tokenizer, the reward model, the prompts
and the loaded benchmark tasks) are loaded once per process by :func:`load_trial_inputs` and
reused by every later trial with the same paths; actors are built in memory, never written.

The benchmarks score the BAI *initialisation* (a fresh actor built from the same ratios), not
the policy the probe trained: the sweep asks which starting point is both capable and stable.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeps.exceptions import SweepsError
from sweeps.search_space import Candidate
from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from evaluators.benchmarks import BenchmarkRunner
    from evaluators.probe import StepMetrics
    from evaluators.rewards import RewardFunction
    from sweeps.merge import MergeInputs

__all__ = [
    "TrialFailedError",
    "TrialInputs",
    "TrialOutcome",
    "clear_trial_inputs",
    "load_trial_inputs",
    "objective_values",
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

        reward = REWARD_RULES[models.reward_rule]
    prompts = load_prompts(models.prompts)
    runner = BenchmarkRunner(spec.benchmarks, tokenizer, spec.prompt)
    return TrialInputs(
        merge_inputs=merge_inputs,
        tokenizer=tokenizer,
        reward=reward,
        prompts=prompts,
        benchmark_runner=runner,
        load_seconds=time.perf_counter() - started,
    )


def objective_values(
    names: Sequence[str], stability: dict[str, Any], benchmark: float, steps: Sequence[Any]
) -> dict[str, float]:
    """The objective values of a trial.

    ``stability`` is the probe's combined stability score in [0, 1], ``benchmark`` the
    weighted mean of the selection tasks, ``reward_gain`` the last update's mean reward minus
    the first's (the untrained actor's) and ``kl`` the KL to the reference at the last update.
    """
    available = {
        "stability": float(stability["stability"]),
        "benchmark": float(benchmark),
        "reward_gain": float(steps[-1].reward_mean - steps[0].reward_mean) if steps else math.nan,
        "kl": float(stability["kl_final"]),
    }
    values = {name: available[name] for name in names}
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise TrialFailedError(f"objective {', '.join(bad)} is not finite")
    return values


def run_trial(
    spec: SweepSpec,
    candidate: Candidate,
    *,
    on_step: Callable[[StepMetrics], None] | None = None,
    inputs: TrialInputs | None = None,
    trust_remote_code: bool = False,
) -> TrialOutcome:
    """Run one trial of ``spec`` at ``candidate``.

    Args:
        on_step: Called with the probe's metrics after every update (live progress).
        inputs: Pre-loaded inputs (default: :func:`load_trial_inputs`).

    Raises:
        TrialFailedError: The probe diverged or an objective is not finite.
        SweepsError, EvaluatorError: Unusable checkpoints, prompts, reward or tasks.
    """
    from evaluators.probe import ProbeDivergedError, run_probe

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if inputs is None:
        inputs = load_trial_inputs(spec, trust_remote_code=trust_remote_code)
        timings["load_s"] = time.perf_counter() - started
    weights, alpha = list(candidate.weights), candidate.alpha

    mark = time.perf_counter()
    actor = inputs.merge_inputs.build_actor(weights, alpha, normalize=True)
    timings["merge_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    try:
        probe = run_probe(
            actor,
            inputs.tokenizer,
            inputs.reward,
            inputs.prompts,
            spec.probe,
            on_step,
            prompt=spec.prompt,
            trust_remote_code=trust_remote_code,
        )
    except ProbeDivergedError as exc:
        raise TrialFailedError(str(exc)) from None
    finally:
        del actor
    timings["probe_s"] = time.perf_counter() - mark
    if probe.stability is None:
        raise TrialFailedError("the probe measured no finite step")

    mark = time.perf_counter()
    initial_actor = inputs.merge_inputs.build_actor(weights, alpha, normalize=True)
    benchmark = inputs.benchmark_runner.score(initial_actor)
    del initial_actor
    timings["benchmark_s"] = time.perf_counter() - mark

    stability = probe.stability.model_dump()
    objectives = objective_values(
        [o.name for o in spec.objectives], stability, benchmark.benchmark, probe.steps
    )
    timings["total_s"] = time.perf_counter() - started
    return TrialOutcome(
        candidate=candidate,
        objectives=objectives,
        stability=stability,
        benchmarks={
            "benchmark": benchmark.benchmark,
            "selection": benchmark.selection_scores,
            "report": benchmark.report_tasks,
            "limit": benchmark.limit,
            # How the models saw their prompts (the probe and lm-eval share it).
            "prompt_format": probe.prompt_format,
            "system_prompt": probe.system_prompt,
            "tokenizer_source": spec.models.tokenizer_source,
        },
        probe={
            "stop_reason": probe.stop_reason.value,
            "partial": probe.partial,
            "detail": probe.detail,
            "steps": len(probe.steps),
            "elapsed_s": probe.elapsed_seconds,
            "prompt_format": probe.prompt_format,
            "precision": spec.probe.precision,
        },
        steps=[step.model_dump() for step in probe.steps],
        timings=timings,
    )
