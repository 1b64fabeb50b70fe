"""Benchmarks on the demo world's trained models (slow: real models, full generation)."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.benchmarks import BenchmarkConfig, BenchmarkResult, BenchmarkRunner
from tests.evaluators._bench_support import network_guard

pytestmark = pytest.mark.slow

LIMIT = 40


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


def test_instruct_beats_base_on_k_and_the_reasoning_chain_is_scored(world_scores) -> None:
    base = world_scores["base"].per_task
    instruct = world_scores["sft_instruct"].per_task
    reasoning = world_scores["sft_reasoning"].per_task
    # K: the instruct model answers fact questions in the "answer X" format it was tuned on.
    assert instruct["bai_facts_mc"].score > base["bai_facts_mc"].score
    # R: the generation task lets the reasoning model write its chain before "answer N". It
    # does not beat the base here (the unenforced precondition reasoning_beats_base_on_R,
    # docs/demo-world.md), but its answers after the chain are read and some are right.
    assert reasoning["bai_arith_gen"].score > 0
    assert instruct["bai_arith_gen"].score > reasoning["bai_arith_gen"].score


def test_real_aggregate_is_the_mean_of_the_selection_scores(world_scores) -> None:
    for result in world_scores.values():
        selection = result.selection_scores
        assert set(selection) == {"bai_facts_mc", "bai_arith_gen"}
        assert result.benchmark == pytest.approx(sum(selection.values()) / len(selection))
        assert set(result.report_tasks) == {"bai_arith_long_gen"}
        assert all(task.n_samples <= LIMIT for task in result.per_task.values())
