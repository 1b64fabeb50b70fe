"""Fast probe tests: prompts, config, backends, the probe's orchestration, reward modules.

The orchestration tests drive ``run_probe`` with ``FakeScriptedBackend`` (emits scripted steps);
``test_probe_ppo.py`` runs the same paths with the real TRL PPO backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from evaluators import backends
from evaluators._probe_types import percentile
from evaluators.backends import ProbeBackend, UnknownBackendError, get_backend, register_backend
from evaluators.backends._trl_ppo import _RecordingReward, _RolloutRecorder, encode_prompts
from evaluators.probe import (
    InvalidProbeInputError,
    ProbeConfig,
    ProbeDivergedError,
    ProbeResponse,
    StepMetrics,
    StopReason,
    load_prompts,
    run_probe,
)
from evaluators.rewards import InvalidRewardError, RuleRewardModel, check_reward_model
from tests.tiny_models import EOS_ID, PAD_ID, tiny_config, tiny_tokenizer

PROMPTS = [f"what is {index} plus 1 ?" for index in range(8)]


def _step(step: int, length: float = 20.0, **values: float) -> StepMetrics:
    fields = {
        "length_mean": length,
        "length_p10": length,
        "length_p50": length,
        "length_p90": length,
        "truncated_fraction": 0.0,
        "eos_rate": 1.0,
        "reward_mean": 0.5,
        "reward_std": 0.1,
        "rlhf_reward": 0.5,
        "kl": 0.01 * step,
        "entropy": length,
        "token_entropy": 1.0,
        "policy_loss": 0.0,
        "value_loss": 0.1,
        "approx_kl": 0.0,
        "clip_fraction": 0.0,
        "elapsed_seconds": float(step),
    }
    return StepMetrics(step=step, **{**fields, **values})


class FakeScriptedBackend(ProbeBackend):
    """Emits a scripted list of steps (set ``script`` before use); records what it was given."""

    name = "fake-scripted"
    script: ClassVar[Sequence[StepMetrics]] = ()
    emitted: ClassVar[list[int]] = []

    def run(self, *, actor, tokenizer, reward, prompts, config, emit, prompt=None) -> None:
        for metrics in self.script[: config.steps]:
            responses = [
                ProbeResponse(
                    step=metrics.step,
                    prompt=prompt,
                    response="r",
                    response_ids=[5, EOS_ID],
                    length=2,
                    truncated=False,
                    score=0.5,
                )
                for prompt in prompts[: config.batch_size]
            ]
            FakeScriptedBackend.emitted.append(metrics.step)
            emit(metrics, responses)


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> type[FakeScriptedBackend]:
    monkeypatch.setattr(backends, "_REGISTERED", {})
    monkeypatch.setattr(FakeScriptedBackend, "emitted", [])
    register_backend(FakeScriptedBackend)
    return FakeScriptedBackend


def _fake_probe(backend: type[FakeScriptedBackend], script: list[StepMetrics], **config: object):
    backend.script = script
    seen: list[StepMetrics] = []
    settings = ProbeConfig(backend="fake-scripted", steps=len(script), batch_size=4, **config)
    result = run_probe(None, None, lambda prompt, response: 0.0, PROMPTS, settings, seen.append)
    return result, seen


def test_load_prompts_from_list_and_jsonl(tmp_path: Path) -> None:
    assert load_prompts(["a", "b"]) == ["a", "b"]
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "what is 1 plus 2 ?", "answer": 3}\n\n{"prompt": "x"}\n')
    assert load_prompts(path) == ["what is 1 plus 2 ?", "x"]
    assert load_prompts(str(path)) == ["what is 1 plus 2 ?", "x"]


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"prompt": "a"}\nnot json\n', ":2:"), ('{"text": "a"}\n', ":1:"), ("", "non-empty")],
)
def test_load_prompts_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(InvalidProbeInputError, match=message):
        load_prompts(path)


def test_load_prompts_rejects_missing_file_and_empty_prompts(tmp_path: Path) -> None:
    with pytest.raises(InvalidProbeInputError, match="cannot read"):
        load_prompts(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidProbeInputError):
        load_prompts(["ok", "  "])


def test_probe_config_is_frozen_strict_and_checks_mini_batches() -> None:
    config = ProbeConfig()
    assert (config.steps, config.batch_size, config.backend) == (30, 8, "trl-ppo")
    with pytest.raises(ValidationError):
        ProbeConfig(unknown=1)
    with pytest.raises(ValidationError, match="multiple of mini_batches"):
        ProbeConfig(batch_size=6, mini_batches=4)
    with pytest.raises(ValidationError):
        config.steps = 3  # type: ignore[misc]


def test_percentile_matches_linear_interpolation() -> None:
    values = [10.0, 1.0, 4.0, 7.0]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 10) == pytest.approx(1.9)
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile([3.0], 90) == 3.0


def test_get_backend_knows_trl_ppo_and_rejects_unknown_names() -> None:
    assert get_backend("trl-ppo").name == "trl-ppo"
    assert "trl-ppo" in backends.backend_names()
    with pytest.raises(UnknownBackendError, match=r"available: .*trl-ppo"):
        get_backend("verl")


def test_on_step_fires_once_per_update_and_stability_is_computed(fake_backend) -> None:
    script = [_step(step) for step in range(1, 6)]
    result, seen = _fake_probe(fake_backend, script)
    assert seen == script == result.steps
    assert (result.stop_reason, result.partial) == (StopReason.COMPLETED, False)
    assert result.stability is not None and result.stability.steps == 5
    assert len(result.responses) == 5 * 4
    assert result.curve("kl") == [step.kl for step in script]


def test_responses_per_step_limits_what_is_kept(fake_backend) -> None:
    result, _ = _fake_probe(fake_backend, [_step(1), _step(2)], responses_per_step=1)
    assert [response.step for response in result.responses] == [1, 2]


def test_early_stop_when_collapse_is_certain(fake_backend) -> None:
    lengths = [40, 36, 20, 10, 6, 6, 30, 40]
    script = [_step(index + 1, float(length)) for index, length in enumerate(lengths)]
    result, seen = _fake_probe(fake_backend, script)
    # window 3 means (from step 3): 32, 22, 12 -> 12/32 < 0.5 at step 5.
    assert fake_backend.emitted == [1, 2, 3, 4, 5]
    assert len(seen) == len(result.steps) == 5
    assert (result.stop_reason, result.partial) == (StopReason.COLLAPSED, True)
    assert "step 5" in result.detail
    assert result.stability.collapsed


def test_no_early_stop_when_disabled(fake_backend) -> None:
    lengths = [40, 36, 20, 10, 6, 6, 30, 40]
    script = [_step(index + 1, float(length)) for index, length in enumerate(lengths)]
    result, _ = _fake_probe(fake_backend, script, early_stop=False)
    assert len(result.steps) == 8 and not result.partial
    assert result.stability.collapsed


def test_nan_loss_raises_diverged_error_keeping_the_steps(fake_backend) -> None:
    script = [_step(1), _step(2), _step(3, policy_loss=math.nan), _step(4)]
    with pytest.raises(ProbeDivergedError, match="policy_loss not finite at step 3") as caught:
        _fake_probe(fake_backend, script)
    result = caught.value.result
    assert fake_backend.emitted == [1, 2, 3]
    assert [step.step for step in result.steps] == [1, 2, 3]
    assert (result.stop_reason, result.partial) == (StopReason.DIVERGED, True)
    assert result.stability is not None and result.stability.steps == 2
    assert "diverged" in str(caught.value)


def test_divergence_at_the_first_step_has_no_stability(fake_backend) -> None:
    with pytest.raises(ProbeDivergedError) as caught:
        _fake_probe(fake_backend, [_step(1, kl=math.inf), _step(2)])
    assert caught.value.result.stability is None
    assert len(caught.value.result.steps) == 1


def test_on_step_errors_abort_the_probe(fake_backend) -> None:
    fake_backend.script = [_step(1), _step(2)]

    def cancel(metrics: StepMetrics) -> None:
        raise KeyboardInterrupt

    settings = ProbeConfig(backend="fake-scripted", steps=2, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        run_probe(None, None, lambda prompt, response: 0.0, PROMPTS, settings, cancel)
    assert fake_backend.emitted == [1]


def test_too_few_prompts_for_a_batch(fake_backend) -> None:
    settings = ProbeConfig(backend="fake-scripted", steps=1, batch_size=8)
    with pytest.raises(InvalidProbeInputError, match="fewer than one batch"):
        run_probe(None, None, lambda prompt, response: 0.0, PROMPTS[:3], settings)


def test_invalid_rewards_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRewardError, match="not a checkpoint"):
        run_probe(None, None, tmp_path, PROMPTS, ProbeConfig(batch_size=4))
    with pytest.raises(InvalidRewardError, match="no backbone"):
        check_reward_model(torch.nn.Linear(2, 2))
    with pytest.raises(InvalidRewardError, match="no `score` head"):
        check_reward_model(AutoModelForCausalLM.from_config(tiny_config()))
    config = tiny_config()
    config.num_labels = 2
    with pytest.raises(InvalidRewardError, match="num_labels=1"):
        check_reward_model(AutoModelForSequenceClassification.from_config(config))


def _query_responses(tokenizer, prompts: list[str], responses: list[list[int]], width: int):
    """Left-padded prompts plus right-padded responses, like PPOTrainer's rollouts."""
    queries, _ = encode_prompts(tokenizer, prompts)
    rows = [
        query + response + [PAD_ID] * (width - len(response))
        for query, response in zip(queries, responses, strict=True)
    ]
    return torch.tensor(rows), len(queries[0])


def test_rule_reward_model_scores_through_trl_get_reward() -> None:
    from trl.experimental.utils import get_reward

    tokenizer = tiny_tokenizer()
    a, b = tokenizer.convert_tokens_to_ids(["a", "b"])
    query_responses, context = _query_responses(
        tokenizer, ["ab", "what"], [[a, a, b, EOS_ID], [b, b, b, b, b, b]], width=6
    )
    seen = []

    def rule(prompt: str, response: str) -> float:
        seen.append((prompt, response))
        return float(response.count("a")) - 0.5 * response.count("b")

    module = RuleRewardModel(rule, tokenizer, context, {(a, b): "ab"})
    _, scores, _ = get_reward(module, query_responses, PAD_ID, context)
    assert scores.tolist() == [1.5, -3.0]
    # "ab" is a known prompt (original text); "what" is decoded.
    assert seen == [("ab", "a a b"), ("w h a t", "b b b b b b")]


def test_recording_reward_scores_like_the_raw_model_and_counts_lengths() -> None:
    from trl.experimental.utils import get_reward

    tokenizer = tiny_tokenizer()
    config = tiny_config()
    config.num_labels = 1
    torch.manual_seed(0)
    reward_model = AutoModelForSequenceClassification.from_config(config)
    a = tokenizer.convert_tokens_to_ids("a")
    responses = [[a, EOS_ID], [a] * 5, [EOS_ID]]
    query_responses, context = _query_responses(
        tokenizer, ["what is 1", "ab", "c"], responses, width=5
    )
    texts = {(tokenizer.convert_tokens_to_ids("c"),): "the original c"}
    recorder = _RolloutRecorder(tokenizer, context, missing_eos_penalty=2.0, prompt_texts=texts)
    with torch.no_grad():
        _, raw, _ = get_reward(reward_model, query_responses, PAD_ID, context)
        _, wrapped, _ = get_reward(
            _RecordingReward(reward_model, recorder), query_responses, PAD_ID, context
        )
    assert torch.equal(raw, wrapped)
    recorded = recorder.drain(step=7)
    assert [response.length for response in recorded] == [2, 5, 1]
    assert [response.truncated for response in recorded] == [False, True, False]
    assert [response.response_ids for response in recorded] == responses
    assert [response.prompt for response in recorded] == [
        "w h a t   i s   1",
        "a b",
        "the original c",
    ]
    penalised = raw.tolist()
    penalised[1] -= 2.0
    assert [response.score for response in recorded] == pytest.approx(penalised)
    assert {response.step for response in recorded} == {7}
    assert recorder.drain(step=8) == []


def test_prompts_file_written_by_the_demo_format(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    lines = [
        json.dumps({"prompt": prompt, "answer": index}) for index, prompt in enumerate(PROMPTS)
    ]
    path.write_text("\n".join(lines) + "\n")
    assert load_prompts(path) == PROMPTS
