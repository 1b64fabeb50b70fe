"""Benchmarks on the demo world's trained models (slow: real models, full generation)."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.benchmarks import BenchmarkConfig, BenchmarkResult, BenchmarkRunner
from tests.evaluators._bench_support import network_guard

pytestmark = pytest.mark.slow

LIMIT = 60


@pytest.fixture(scope="module")
def world_scores(demo_world) -> dict[str, BenchmarkResult]:
    tokenizer = AutoTokenizer.from_pretrained(demo_world.base)
    config = BenchmarkConfig(limit=LIMIT, device="cpu")
    runner = BenchmarkRunner(config, tokenizer)
    with pytest.MonkeyPatch.context() as monkeypatch, network_guard(monkeypatch) as attempts:
        scores = {
            name: runner.score(AutoModelForCausalLM.from_pretrained(path))
            for name, path in (
                ("base", demo_world.base),
                ("sft_instruct", demo_world.sft_instruct),
                ("sft_reasoning", demo_world.sft_reasoning),
            )
        }
    assert attempts == [], f"network connections attempted: {attempts}"
    return scores


def test_instruct_sft_beats_base_on_what_it_was_trained_for(world_scores) -> None:
    base, instruct = world_scores["base"], world_scores["sft_instruct"]
    # Brief "answer N" responses: both the log-likelihood choice and the generated answer.
    assert instruct.per_task["bai_arith_mc"].score > base.per_task["bai_arith_mc"].score
    assert instruct.per_task["bai_arith_gen"].score > base.per_task["bai_arith_gen"].score
    assert instruct.benchmark > base.benchmark


def test_reasoning_sft_beats_base_on_generation(world_scores) -> None:
    base, reasoning = world_scores["base"], world_scores["sft_reasoning"]
    # Reasoning traces end with "answer N": the generated answer is what it was trained for.
    assert reasoning.per_task["bai_arith_gen"].score > base.per_task["bai_arith_gen"].score
    assert reasoning.benchmark > base.benchmark


def test_real_aggregate_is_the_mean_of_the_selection_scores(world_scores) -> None:
    for result in world_scores.values():
        selection = result.selection_scores
        assert set(selection) == {"bai_arith_mc", "bai_arith_gen"}
        assert result.benchmark == pytest.approx(sum(selection.values()) / len(selection))
        assert set(result.report_tasks) == {"bai_arith_long_gen"}
        assert all(task.n_samples == LIMIT for task in result.per_task.values())
