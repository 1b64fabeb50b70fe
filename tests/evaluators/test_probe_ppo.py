"""The probe with the real TRL PPO backend on tiny random Llama models (a few updates each)."""

from __future__ import annotations

import copy
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.probe import (
    InvalidProbeInputError,
    ProbeConfig,
    ProbeDivergedError,
    StopReason,
    run_probe,
)
from tests.tiny_models import EOS_ID, make_probe_inputs

pytestmark = pytest.mark.slow

PROMPTS = [f"what is {a} plus {b} ?" for a, b in zip(range(1, 9), range(9, 1, -1), strict=True)]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from threads, and thread spinning is slow on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    prompts = [{"prompt": text} for text in PROMPTS]
    root = tmp_path_factory.mktemp("probe-world")
    return make_probe_inputs(root, prompts, actor_seed=3, reward_seed=4)


def _actor(checkpoints: dict[str, Path], *, eos_friendly: bool = False):
    model = AutoModelForCausalLM.from_pretrained(checkpoints["actor"])
    if eos_friendly:
        # Near-uniform next-token distributions: EOS shows up within a few tokens now and then.
        with torch.no_grad():
            model.lm_head.weight.mul_(0.05)
    return model, AutoTokenizer.from_pretrained(checkpoints["actor"])


def _manual_length(ids: list[int]) -> int:
    return ids.index(EOS_ID) + 1 if EOS_ID in ids else len(ids)


def test_probe_trains_the_actor_and_measures_what_it_generated(checkpoints) -> None:
    actor, tokenizer = _actor(checkpoints, eos_friendly=True)
    before = {name: value.detach().clone() for name, value in actor.named_parameters()}
    config = ProbeConfig(
        steps=3,
        batch_size=4,
        response_length=12,
        learning_rate=1e-3,
        missing_eos_penalty=1.0,
        early_stop=False,
    )
    seen = []
    result = run_probe(
        actor, tokenizer, checkpoints["reward"], checkpoints["prompts"], config, seen.append
    )

    assert [step.step for step in seen] == [1, 2, 3]
    assert seen == result.steps
    assert (result.stop_reason, result.partial) == (StopReason.COMPLETED, False)
    changed = [
        name for name, value in actor.named_parameters() if not torch.equal(value, before[name])
    ]
    assert changed, "PPO did not change the actor's weights"

    for step in result.steps:
        responses = [response for response in result.responses if response.step == step.step]
        assert len(responses) == config.batch_size
        lengths = [_manual_length(response.response_ids) for response in responses]
        assert [response.length for response in responses] == lengths
        for response in responses:
            assert response.truncated == (EOS_ID not in response.response_ids)
            if response.truncated:
                assert len(response.response_ids) == config.response_length
            else:
                assert response.response_ids[-1] == EOS_ID
            assert response.prompt in PROMPTS
        assert step.length_mean == pytest.approx(statistics.fmean(lengths))
        for name, q in (("length_p10", 10), ("length_p50", 50), ("length_p90", 90)):
            assert getattr(step, name) == pytest.approx(float(np.percentile(lengths, q)))
        truncated = statistics.fmean(response.truncated for response in responses)
        assert step.truncated_fraction == pytest.approx(truncated)
        assert step.eos_rate == pytest.approx(1 - truncated)
        # The recorded scores (after the missing-EOS penalty) are exactly what PPOTrainer used.
        scores = [response.score for response in responses]
        assert step.reward_mean == pytest.approx(statistics.fmean(scores), abs=1e-5)
        assert step.reward_std == pytest.approx(statistics.pstdev(scores), abs=1e-6)
        assert not step.non_finite_fields()
    assert any(response.truncated for response in result.responses)
    assert any(not response.truncated for response in result.responses)
    assert result.stability is not None and result.stability.steps == 3


def _length_penalty(prompt: str, response: str) -> float:
    return -0.1 * len(response)


def test_probe_is_deterministic_for_a_seed_on_cpu(checkpoints) -> None:
    config = ProbeConfig(steps=2, batch_size=4, response_length=8, learning_rate=1e-3, seed=7)
    runs = []
    for _ in range(2):
        actor, tokenizer = _actor(checkpoints, eos_friendly=True)
        runs.append(run_probe(actor, tokenizer, _length_penalty, PROMPTS, config))
    first, second = (
        [step.model_dump(exclude={"elapsed_seconds"}) for step in run.steps] for run in runs
    )
    assert first == second
    assert [r.response_ids for r in runs[0].responses] == [
        r.response_ids for r in runs[1].responses
    ]
    other_seed = run_probe(
        *_actor(checkpoints, eos_friendly=True),
        _length_penalty,
        PROMPTS,
        config.model_copy(update={"seed": 8}),
    )
    assert [r.response_ids for r in other_seed.responses] != [
        r.response_ids for r in runs[0].responses
    ]


def test_nan_reward_stops_the_probe_with_a_diverged_error(checkpoints) -> None:
    actor, tokenizer = _actor(checkpoints)
    seen = []
    config = ProbeConfig(steps=3, batch_size=4, response_length=6)
    with pytest.raises(ProbeDivergedError, match="not finite at step 1") as caught:
        run_probe(actor, tokenizer, lambda p, r: math.nan, PROMPTS, config, seen.append)
    result = caught.value.result
    assert len(seen) == len(result.steps) == 1
    assert math.isnan(result.steps[0].reward_mean)
    assert (result.stop_reason, result.partial, result.stability) == (
        StopReason.DIVERGED,
        True,
        None,
    )


def test_early_stop_through_the_trainer_flags_a_partial_result(checkpoints) -> None:
    actor, tokenizer = _actor(checkpoints, eos_friendly=True)
    # Threshold 1.0: any fall of the rolling-mean length below the first step counts.
    config = ProbeConfig(
        steps=12, batch_size=4, response_length=12, learning_rate=1e-3, collapse_threshold=1.0
    )
    result = run_probe(actor, tokenizer, _length_penalty, PROMPTS, config)
    assert (result.stop_reason, result.partial) == (StopReason.COLLAPSED, True)
    assert len(result.steps) < config.steps
    assert result.stability.collapsed
    assert f"step {result.steps[-1].step}" in result.detail


def test_tokenizer_without_pad_token_falls_back_to_eos(checkpoints) -> None:
    actor, tokenizer = _actor(checkpoints, eos_friendly=True)
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    config = ProbeConfig(steps=1, batch_size=4, response_length=6)
    result = run_probe(actor, no_pad, _length_penalty, PROMPTS, config)
    assert no_pad.pad_token is None
    for response in result.responses:
        assert response.length == _manual_length(response.response_ids)


def test_inputs_that_cannot_work_are_refused(checkpoints) -> None:
    actor, tokenizer = _actor(checkpoints)
    with pytest.raises(InvalidProbeInputError, match="exceed the actor's 128 positions"):
        run_probe(actor, tokenizer, _length_penalty, PROMPTS, ProbeConfig(response_length=200))
    with pytest.raises(InvalidProbeInputError, match="needs a reward model"):
        run_probe(
            actor,
            tokenizer,
            _length_penalty,
            PROMPTS,
            ProbeConfig(value_model="reward", response_length=8),
        )
