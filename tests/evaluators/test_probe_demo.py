"""The probe on the demo world's trained models (two PPO updates, four prompts per rollout)."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.probe import ProbeConfig, StopReason, run_probe
from sweeps.demo.problems import parse_answer

pytestmark = pytest.mark.slow

CONFIG = ProbeConfig(steps=2, batch_size=4, response_length=16, learning_rate=1e-4, seed=0)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reasoning_actor(world):
    actor = AutoModelForCausalLM.from_pretrained(world.sft_reasoning)
    return actor, AutoTokenizer.from_pretrained(world.sft_reasoning)


def test_reasoning_actor_with_the_world_reward_model(demo_world) -> None:
    actor, tokenizer = _reasoning_actor(demo_world)
    before = {name: value.detach().clone() for name, value in actor.named_parameters()}
    seen = []
    result = run_probe(actor, tokenizer, demo_world.reward, demo_world.prompts, CONFIG, seen.append)

    assert [step.step for step in seen] == [1, 2] and seen == result.steps
    assert result.stop_reason is StopReason.COMPLETED
    assert any(not torch.equal(value, before[name]) for name, value in actor.named_parameters())
    eos = tokenizer.eos_token_id
    for step in result.steps:
        responses = [response for response in result.responses if response.step == step.step]
        counts = [
            ids.index(eos) + 1 if eos in ids else len(ids)
            for ids in (response.response_ids for response in responses)
        ]
        assert step.length_mean == pytest.approx(statistics.fmean(counts))
        assert step.reward_mean == pytest.approx(
            statistics.fmean(response.score for response in responses), abs=1e-5
        )
    # The reasoning model ends its traces with EOS; the recorded text is the decoded trace.
    finished = [response for response in result.responses if not response.truncated]
    assert finished
    assert all(response.response_ids[-1] == eos for response in finished)
    assert all(" is " in response.response for response in finished)


def test_rule_based_correctness_reward(demo_world) -> None:
    records = [json.loads(line) for line in demo_world.prompts.read_text().splitlines()]
    answers = {record["prompt"]: record["answer"] for record in records}

    def correct(prompt: str, response: str) -> float:
        return 1.0 if parse_answer(response) == answers[prompt] else 0.0

    actor, tokenizer = _reasoning_actor(demo_world)
    config = CONFIG.model_copy(update={"response_length": 48})
    result = run_probe(actor, tokenizer, correct, demo_world.prompts, config)
    for response in result.responses:
        assert response.score == correct(response.prompt, response.response)
    assert any(response.score == 1.0 for response in result.responses)
    assert result.stability is not None
