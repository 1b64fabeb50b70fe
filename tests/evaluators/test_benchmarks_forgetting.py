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
)
from evaluators.tasks import SHIPPED_TASKS


def _result(**scores: tuple[float, float | None]) -> BenchmarkResult:
    """Per task ``(acc, stderr)``."""
    per_task = {
        name: TaskScore(
            name=name,
            roles=("selection",),
            metric="acc,none",
            score=score,
            weight=1.0,
            n_samples=100,
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
