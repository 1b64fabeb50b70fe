"""Scoring a model: the RLHF stability probe and the lm-eval benchmark runner."""

from __future__ import annotations

from evaluators.backends import ProbeBackend, get_backend
from evaluators.benchmarks import (
    BenchmarkConfig,
    BenchmarkResult,
    BenchmarkRunner,
    TaskRef,
    TaskScore,
    evaluate_benchmarks,
    evaluate_checkpoint,
    result_from_lm_eval,
)
from evaluators.plots import plot_probe_curves
from evaluators.probe import (
    InvalidProbeInputError,
    ProbeConfig,
    ProbeDivergedError,
    ProbeResponse,
    ProbeResult,
    StepMetrics,
    StopReason,
    load_prompts,
    run_probe,
)
from evaluators.stability import StabilityMetrics, compute_stability, stability_from_steps

__all__ = [
    "BenchmarkConfig",
    "BenchmarkResult",
    "BenchmarkRunner",
    "InvalidProbeInputError",
    "ProbeBackend",
    "ProbeConfig",
    "ProbeDivergedError",
    "ProbeResponse",
    "ProbeResult",
    "StabilityMetrics",
    "StepMetrics",
    "StopReason",
    "TaskRef",
    "TaskScore",
    "compute_stability",
    "evaluate_benchmarks",
    "evaluate_checkpoint",
    "get_backend",
    "load_prompts",
    "plot_probe_curves",
    "result_from_lm_eval",
    "run_probe",
    "stability_from_steps",
]
