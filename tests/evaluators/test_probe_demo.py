"""The probe on the demo world's trained models (two PPO updates, four prompts per rollout)."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.probe import ProbeConfig, StopReason, run_probe
from evaluators.reward_rules import REWARD_RULES
from evaluators.task_family import parse_answer

pytestmark = pytest.mark.slow

CONFIG = ProbeConfig(steps=2, batch_size=4, response_length=24, learning_rate=1e-4, seed=0)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reasoning_actor(world):
    actor = AutoModelForCausalLM.from_pretrained(world.sft_reasoning)
    return actor, AutoTokenizer.from_pretrained(world.sft_reasoning)


def test_reasoning_actor_with_the_world_reward_rule(demo_world) -> None:
    actor, tokenizer = _reasoning_actor(demo_world)
    before = {name: value.detach().clone() for name, value in actor.named_parameters()}
    seen = []
    reward = REWARD_RULES[demo_world.reward_rule]
    result = run_probe(actor, tokenizer, reward, demo_world.prompts, CONFIG, seen.append)

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
    for response in result.responses:
        assert response.score == pytest.approx(reward(response.prompt, response.response))
        assert response.truncated == (eos not in response.response_ids)
    # The reasoning model's chains are longer than the response length: decoded, cut chains.
    assert any(" is " in response.response for response in result.responses)


def test_rule_based_correctness_reward(demo_world) -> None:
    records = [json.loads(line) for line in demo_world.prompts.read_text().splitlines()]
    answers = {record["prompt"]: record["answer"] for record in records}

    def correct(prompt: str, response: str) -> float:
        return 1.0 if parse_answer(response) == str(answers[prompt]) else 0.0

    actor, tokenizer = _reasoning_actor(demo_world)
    config = CONFIG.model_copy(update={"response_length": 128, "batch_size": 8})
    result = run_probe(actor, tokenizer, correct, demo_world.prompts, config)
    for response in result.responses:
        assert response.score == correct(response.prompt, response.response)
    assert any(response.score == 1.0 for response in result.responses)
    assert result.stability is not None
