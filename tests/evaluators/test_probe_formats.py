"""Prompt formats and mixed precision in the real TRL PPO probe and in lm-eval, on tiny models.

The chat template is built here (the tiny character tokenizer has none); the bf16 checks run the
same placement code path a GPU runs, with autocast on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from evaluators import placement as placement_module
from evaluators.backends import _trl_ppo
from evaluators.backends._trl_ppo import encode_prompts
from evaluators.benchmarks import BenchmarkConfig, BenchmarkRunner
from evaluators.probe import ProbeConfig, run_probe
from evaluators.prompting import (
    PromptFormatError,
    PromptSettings,
    render_prompt,
    resolve_prompt_format,
)
from tests.evaluators._bench_support import user_task_body, write_task_yaml
from tests.tiny_models import PAD_ID, make_checkpoint, tiny_tokenizer

pytestmark = pytest.mark.slow

# Only characters of the tiny vocabulary: "u what is 1 plus 9 ? . a " for one user turn.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'][0] }} {{ m['content'] }} . {% endfor %}"
    "{% if add_generation_prompt %}a {% endif %}"
)
PROMPTS = [f"what is {a} plus {b} ?" for a, b in zip(range(1, 5), range(9, 5, -1), strict=True)]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _chat_tokenizer():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {
        "fp32": make_checkpoint(root / "fp32", dtype=torch.float32, seed=3),
        "bf16": make_checkpoint(root / "bf16", dtype=torch.bfloat16, seed=3),
    }


def test_auto_format_follows_the_tokenizer_and_bad_combinations_are_refused() -> None:
    plain, chat = tiny_tokenizer(), _chat_tokenizer()
    assert resolve_prompt_format(plain, PromptSettings()) == "raw"
    assert resolve_prompt_format(chat, PromptSettings()) == "chat"
    assert resolve_prompt_format(chat, PromptSettings(format="raw")) == "raw"
    with pytest.raises(PromptFormatError, match="has none"):
        resolve_prompt_format(plain, PromptSettings(format="chat"))
    with pytest.raises(PromptFormatError, match="system prompt needs the chat format"):
        resolve_prompt_format(plain, PromptSettings(system="be brief"))
    settings = PromptSettings(system="be brief")
    assert render_prompt(chat, "what is 1 ?", settings) == "s be brief . u what is 1 ? . a "


def test_encoded_chat_prompts_are_the_template_without_extra_special_tokens() -> None:
    tokenizer = _chat_tokenizer()
    queries, texts = encode_prompts(tokenizer, PROMPTS, PromptSettings())
    expected = [tokenizer(f"u {p} . a ", add_special_tokens=False)["input_ids"] for p in PROMPTS]
    width = max(map(len, expected))
    assert queries == [[PAD_ID] * (width - len(ids)) + ids for ids in expected]
    # Rule rewards get the question itself, not the template around it.
    assert sorted(texts.values()) == sorted(PROMPTS)


def test_chat_prompts_reach_the_trainer_and_the_reward(checkpoints, monkeypatch) -> None:
    tokenizer = _chat_tokenizer()
    trainer_queries: list[list[int]] = []

    class RecordingTrainer(_trl_ppo.PPOTrainer):
        def __init__(self, *args, **kwargs):
            trainer_queries.extend(kwargs["train_dataset"]["input_ids"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_trl_ppo, "PPOTrainer", RecordingTrainer)
    rewarded: list[str] = []

    def reward(prompt: str, response: str) -> float:
        rewarded.append(prompt)
        return float(len(response))

    actor = AutoModelForCausalLM.from_pretrained(checkpoints["fp32"])
    config = ProbeConfig(steps=1, batch_size=4, response_length=4, device="cpu", early_stop=False)
    settings = PromptSettings(system="be brief")
    result = run_probe(actor, tokenizer, reward, PROMPTS, config, prompt=settings)
    decoded = sorted(
        tokenizer.decode([t for t in ids if t != PAD_ID]).replace(" ", "")
        for ids in trainer_queries
    )
    assert decoded == sorted(f"sbebrief.u{p.replace(' ', '')}.a" for p in PROMPTS)
    assert sorted(set(rewarded)) == sorted(PROMPTS)
    assert result.prompt_format == "chat" and result.system_prompt == "be brief"


def _changed_fraction(checkpoint: Path, precision: str) -> float:
    """Fraction of the actor's weights two PPO updates at lr 3e-6 changed."""
    actor = AutoModelForCausalLM.from_pretrained(checkpoint)
    before = {name: p.detach().float().clone() for name, p in actor.named_parameters()}
    config = ProbeConfig(
        steps=2,
        batch_size=4,
        response_length=6,
        learning_rate=3e-6,
        device="cpu",
        precision=precision,
        early_stop=False,
    )
    run_probe(actor, _chat_tokenizer(), lambda p, r: float(len(r)), PROMPTS, config)
    changed = total = 0
    for name, parameter in actor.named_parameters():
        changed += int((parameter.detach().float() != before[name]).sum())
        total += parameter.numel()
    return changed / total


def test_bf16_checkpoint_trains_under_autocast_like_float32(checkpoints, monkeypatch) -> None:
    float32 = _changed_fraction(checkpoints["fp32"], "fp32")
    bf16 = _changed_fraction(checkpoints["bf16"], "bf16")
    assert float32 > 0.5
    assert bf16 >= 0.95 * float32
    # What this guards against: bf16 master weights round nearly every update away.
    real_plan = placement_module.plan_placement

    def bf16_master(*args, **kwargs):
        return dataclasses.replace(real_plan(*args, **kwargs), trained_dtype=torch.bfloat16)

    monkeypatch.setattr(_trl_ppo, "plan_placement", bf16_master)
    assert _changed_fraction(checkpoints["bf16"], "bf16") < 0.5 * float32


def test_lm_eval_requests_go_through_the_chat_template_with_multiturn_fewshot(
    tmp_path, checkpoints, monkeypatch
) -> None:
    from lm_eval.models.huggingface import HFLM

    data = tmp_path / "docs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"what is {n} plus 1 ?", "answer": n + 1}) + "\n"
            for n in range(6)
        )
    )
    body = user_task_body("chat_task", data) + "num_fewshot: 2\nfewshot_split: test\n"
    write_task_yaml(tmp_path / "tasks", "chat_task", body)
    histories: list[list[dict]] = []
    real = HFLM.apply_chat_template

    def recording(self, chat_history, add_generation_prompt=True):
        histories.append(chat_history)
        return real(self, chat_history, add_generation_prompt)

    monkeypatch.setattr(HFLM, "apply_chat_template", recording)
    config = BenchmarkConfig(
        selection=["chat_task"],
        report=[],
        include_path=[tmp_path / "tasks"],
        limit=2,
        batch_size=4,
        device="cpu",
    )
    model = AutoModelForCausalLM.from_pretrained(checkpoints["fp32"])
    runner = BenchmarkRunner(config, _chat_tokenizer(), PromptSettings(system="be brief"))
    result = runner.score(model)
    assert result.prompt_format == "chat"
    assert histories, "lm-eval never applied the chat template"
    roles = [message["role"] for message in histories[0]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert histories[0][0]["content"] == "be brief"
    # Raw format: the template is never applied.
    histories.clear()
    raw = BenchmarkRunner(config, _chat_tokenizer(), PromptSettings(format="raw"))
    assert raw.score(model).prompt_format == "raw" and histories == []
