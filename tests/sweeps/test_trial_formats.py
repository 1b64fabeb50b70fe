"""One real trial (in-memory merge -> PPO probe -> lm-eval) on tiny models with a chat template and
a reasoning SFT model that added tokens: the spec's prompt format and tokenizer source reach
every stage and are recorded with the trial."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from evaluators.rewards import InvalidRewardError
from sweeps.search_space import Candidate
from sweeps.spec import SweepSpec
from sweeps.trial import clear_trial_inputs, load_trial_inputs, run_trial
from tests.sweeps._report_support import one_trial_report
from tests.sweeps.test_merge_vocab import ADDED, BASE_TOKENS, _with_added_tokens
from tests.tiny_models import (
    TINY_BENCHMARKS,
    make_checkpoint,
    tiny_config,
    tiny_tokenizer,
    write_arith_prompts,
)

pytestmark = pytest.mark.slow

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'][0] }} {{ m['content'] }} . {% endfor %}"
    "{% if add_generation_prompt %}a {% endif %}"
)


@pytest.fixture(autouse=True)
def _fresh_inputs():
    clear_trial_inputs()
    yield
    clear_trial_inputs()


def _chat(path: Path, *, added: bool = False) -> Path:
    if added:
        _with_added_tokens(path)
    tokenizer = AutoTokenizer.from_pretrained(path) if added else tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


def _spec(root: Path, **models) -> SweepSpec:
    common = {"dtype": torch.bfloat16}
    base = _chat(make_checkpoint(root / "base", seed=0, vocab_size=BASE_TOKENS, **common))
    instruct = make_checkpoint(root / "instruct", seed=1, vocab_size=BASE_TOKENS, **common)
    reasoning = make_checkpoint(
        root / "reasoning", seed=2, vocab_size=BASE_TOKENS + len(ADDED), **common
    )
    _chat(reasoning, added=True)
    prompts = write_arith_prompts(root / "prompts.jsonl", 4)
    data = {
        "name": "formats",
        "models": {
            "base": str(base),
            "sft": [str(instruct), str(reasoning)],
            "reward_rule": "arith_correct",
            "prompts": str(prompts),
            "tokenizer_source": "union",
        }
        | models,
        "search": {"n_trials": 1, "seed_points": "none"},
        "prompt": {"format": "chat", "system": "be brief"},
        "probe": {"steps": 2, "batch_size": 4, "response_length": 6, "device": "cpu"},
        "benchmarks": TINY_BENCHMARKS,
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(data))
    return SweepSpec.from_file(root / "spec.yaml")


def test_trial_uses_and_records_the_prompt_format_and_union_vocabulary(tmp_path) -> None:
    spec = _spec(tmp_path)
    inputs = load_trial_inputs(spec)
    assert len(inputs.tokenizer) == BASE_TOKENS + len(ADDED)
    assert inputs.benchmark_runner.prompt_format == "chat"
    outcome = run_trial(spec, Candidate((0.5, 0.5), 0.5), inputs=inputs)
    assert outcome.probe["prompt_format"] == "chat"
    recorded = outcome.benchmarks
    assert recorded["prompt_format"] == "chat" and recorded["system_prompt"] == "be brief"
    assert recorded["tokenizer_source"] == "union"
    markdown = one_trial_report("formats", outcome, 0.5, benchmarks=recorded).to_markdown()
    assert "- prompt format: chat (system prompt: 'be brief'), tokenizer_source: union" in markdown


def test_a_reward_model_without_the_added_tokens_is_refused(tmp_path) -> None:
    config = tiny_config(vocab_size=BASE_TOKENS)
    config.num_labels = 1
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "reward")
    spec = _spec(tmp_path, reward=str(tmp_path / "reward"), reward_rule=None)
    with pytest.raises(InvalidRewardError, match="51 tokens but the reward model only 49"):
        load_trial_inputs(spec)
