"""Combining the seeds of a trial's probes (no model needed)."""

from __future__ import annotations

import math

import pytest

from evaluators.benchmarks import BenchmarkResult, TaskScore
from sweeps.trial import (
    _combine_forecasts,
    _combine_stability,
    _SeedRun,
    benchmark_stderr,
    grade_task_family,
)


def _run(seed: int, **stability: object) -> _SeedRun:
    return _SeedRun(seed, dict(stability), {}, {}, [], None)


def test_seeds_are_averaged_and_a_field_some_lack_is_left_out() -> None:
    combined = _combine_stability(
        [
            _run(0, stability=0.5, collapsed=False, correctness_retention=0.5, detail="a"),
            _run(1, stability=0.7, collapsed=True, detail="b"),
        ]
    )
    assert combined == {"stability": 0.6, "collapsed": True, "detail": ["a", "b"]}


def test_task_family_grading() -> None:
    assert grade_task_family("what is 17 plus 8 minus 5 ?", "17 plus 8 is 25 . answer 20")
    assert grade_task_family("what is 17 plus 8 minus 5 ?", "answer 21") is False
    assert grade_task_family("write a poem", "answer 20") is None


def test_benchmark_stderr_of_a_perfect_score_is_floored() -> None:
    def task(name: str, score: float, se: float, n: int) -> TaskScore:
        metrics = {"acc,none": score, "acc_stderr,none": se}
        return TaskScore(
            name=name,
            roles=("selection",),
            metric="acc,none",
            score=score,
            weight=1.0,
            n_samples=n,
            metrics=metrics,
        )

    perfect = task("a", 1.0, 0.0, 50)
    half = task("b", 0.5, 0.05, 100)
    result = BenchmarkResult(
        per_task={"a": perfect, "b": half}, benchmark=0.75, wall_time_s=0.0, limit=None
    )
    # Agresti-Coull's 0.025277 for 50/50 (see test_statistics), lm-eval's 0.05 for 50/100;
    # equal weights: sqrt((0.025277 / 2)^2 + (0.05 / 2)^2).
    assert benchmark_stderr(result) == pytest.approx(math.hypot(0.025277, 0.05) / 2, abs=1e-6)


def test_reward_forecasts_are_combined_over_the_seeds_that_have_one() -> None:
    fitted = {"asymptote": 0.8, "efficiency": 1.0, "reason": None}
    other = {"asymptote": 0.9, "efficiency": 2.0, "reason": None}
    refused = {"asymptote": None, "efficiency": None, "reason": "flat reward: nothing to fit"}
    combined = _combine_forecasts([fitted, other, refused])
    assert combined["asymptote"]["mean"] == pytest.approx(0.85)
    assert combined["efficiency"]["mean"] == pytest.approx(1.5)
    assert (combined["seeds_fitted"], combined["seeds"]) == (2, 3)
    assert combined["reasons"] == ["flat reward: nothing to fit"]
    none = _combine_forecasts([refused])
    assert none["asymptote"] is None and none["seeds_fitted"] == 0
