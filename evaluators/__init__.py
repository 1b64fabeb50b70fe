"""Scoring a model: the RLHF stability probe and the lm-eval benchmark runner."""

from __future__ import annotations

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

__all__ = [
    "BenchmarkConfig",
    "BenchmarkResult",
    "BenchmarkRunner",
    "TaskRef",
    "TaskScore",
    "evaluate_benchmarks",
    "evaluate_checkpoint",
    "result_from_lm_eval",
]
