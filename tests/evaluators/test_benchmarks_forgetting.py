"""Forgetting versus the base model, hand-computed, and the default retention tasks."""

from __future__ import annotations

import math

import pytest

from evaluators.benchmarks import (
    KNOWLEDGE_TASKS,
    BenchmarkConfig,
    BenchmarkResult,
    TaskScore,
    forgetting,
    forgetting_stderr,
    proportion_stderr,
)
from evaluators.tasks import SHIPPED_TASKS


def _result(documents: int = 10_000, **scores: tuple[float, float | None]) -> BenchmarkResult:
    """Per task ``(acc, stderr)`` on ``documents`` documents (many by default: the
    Agresti-Coull floor of :func:`proportion_stderr` stays below the given errors)."""
    per_task = {
        name: TaskScore(
            name=name,
            roles=("selection",),
            metric="acc,none",
            score=score,
            weight=1.0,
            n_samples=documents,
            metrics={"acc,none": score, **({"acc_stderr,none": se} if se is not None else {})},
        )
        for name, (score, se) in scores.items()
    }
    return BenchmarkResult(per_task=per_task, benchmark=0.0, wall_time_s=0.0, limit=None)


def test_forgetting_by_hand() -> None:
    base = _result(k1=(0.8, 0.03), k2=(0.6, 0.04), r=(0.1, 0.01))
    model = _result(k1=(0.5, 0.04), k2=(0.7, 0.03), r=(0.9, 0.01))
    # ((0.8 - 0.5) + (0.6 - 0.7)) / 2 = 0.1; r is not a retention task.
    assert forgetting(model, base, ["k1", "k2"]) == pytest.approx(0.1)
    # sqrt(0.03^2 + 0.04^2 + 0.04^2 + 0.03^2) / 2 = sqrt(0.005) / 2.
    assert forgetting_stderr(model, base, ["k1", "k2"]) == pytest.approx(math.sqrt(0.005) / 2)
    assert forgetting_stderr(_result(k1=(0.5, None)), base, ["k1"]) is None
    with pytest.raises(ValueError):
        forgetting(model, base, [])


def test_default_retention_tasks_are_the_scored_knowledge_tasks() -> None:
    assert set(KNOWLEDGE_TASKS) <= set(SHIPPED_TASKS)
    assert BenchmarkConfig().retention_tasks == ["bai_facts_mc"]
    assert BenchmarkConfig(selection=["bai_arith_gen"], report=[]).retention_tasks == []
    held_out = BenchmarkConfig(selection=["bai_arith_gen"], report=["bai_facts_mc"])
    assert held_out.retention_tasks == ["bai_facts_mc"]


def test_proportion_stderr_floors_a_perfect_score() -> None:
    # 50 of 50: n~ = 50 + z^2 = 53.8415, p~ = (50 + z^2 / 2) / n~ = 0.96433,
    # se~ = sqrt(p~ (1 - p~) / n~) = 0.025277.
    assert proportion_stderr(1.0, 50, 0.0) == pytest.approx(0.025277, abs=1e-6)
    assert proportion_stderr(0.0, 50, 0.0) == pytest.approx(0.025277, abs=1e-6)
    # Half right of 100: lm-eval's sqrt(0.25 / 99) = 0.050252 beats se~ = 0.049066.
    assert proportion_stderr(0.5, 100, 0.050252) == 0.050252
    with pytest.raises(ValueError, match="documents"):
        proportion_stderr(1.0, 0, 0.0)


def test_forgetting_stderr_of_perfect_scores_is_floored() -> None:
    # 100 of 100 on both: Agresti-Coull's se~ = sqrt(p~ (1 - p~) / n~) with n~ = 100 + z^2,
    # p~ = (100 + z^2 / 2) / n~, for each model, in quadrature, over one task.
    z2 = 1.959963985**2
    shifted_p = (100 + z2 / 2) / (100 + z2)
    se = math.sqrt(shifted_p * (1 - shifted_p) / (100 + z2))
    perfect = _result(100, k1=(1.0, 0.0))
    assert forgetting_stderr(perfect, perfect, ["k1"]) == pytest.approx(math.sqrt(2) * se)
