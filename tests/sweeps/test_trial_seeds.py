"""Combining the seeds of a trial's probes (no model needed)."""

from __future__ import annotations

import math

import pytest

from evaluators.benchmarks import BenchmarkResult, TaskScore
from sweeps.trial import (
    TrialFailedError,
    _combine_forecasts,
    _combine_stability,
    _SeedRun,
    benchmark_stderr,
    grade_task_family,
    objective_values,
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
    assert combined["fallback"] is True and "horizon" not in combined
    none = _combine_forecasts([refused])
    assert none["asymptote"] is None and none["seeds_fitted"] == 0


def test_length_forecasts_are_combined_with_the_horizon_and_the_fallback() -> None:
    fitted = {
        "asymptote": 90.0,
        "efficiency": 1.0,
        "horizon": 48,
        "at_horizon": 80.0,
        "at_horizon_se": 3.0,
        "value": 80.0,
        "fallback": False,
        "reason": None,
    }
    other = {**fitted, "asymptote": 100.0, "at_horizon": 90.0, "at_horizon_se": 4.0}
    refused = {
        "asymptote": None,
        "efficiency": None,
        "horizon": 48,
        "at_horizon": None,
        "at_horizon_se": None,
        "value": 40.0,
        "fallback": True,
        "reason": "flat length: nothing to fit",
    }
    combined = _combine_forecasts([fitted, other, refused])
    assert combined["horizon"] == 48
    assert combined["at_horizon"]["mean"] == pytest.approx(85.0)
    assert combined["at_horizon"]["n"] == 2
    assert combined["at_horizon_se"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert combined["fallback"] is True and combined["seeds_fitted"] == 2
    assert combined["reasons"] == ["flat length: nothing to fit"]
    alone = _combine_forecasts([refused])
    assert alone["at_horizon"] is None and alone["at_horizon_se"] is None
    assert _combine_forecasts([fitted, other])["fallback"] is False


def test_forecast_objectives_take_each_seeds_value() -> None:
    stability = {
        "stability": 0.5,
        "kl_final": 0.1,
        "reward_forecast": {"value": 0.7, "fallback": False},
        "length_forecast": {"value": 42.0, "fallback": True},
    }
    values = objective_values(["reward_asymptote", "length_at_horizon"], stability, 0.3, [])
    assert values == {"reward_asymptote": 0.7, "length_at_horizon": 42.0}
    # No value (no finite step): the trial fails rather than invent one.
    empty = {**stability, "length_forecast": {"value": None, "fallback": True}}
    with pytest.raises(TrialFailedError, match="length_at_horizon is not finite"):
        objective_values(["length_at_horizon"], empty, 0.3, [])
