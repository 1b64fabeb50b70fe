"""Factories for tiny random Hugging Face checkpoints (nothing is downloaded).

Any test may use them: ``make_checkpoint`` saves one model (Llama-style or Qwen2, tied or untied
embeddings, single-file or sharded, bf16/fp16/fp32) with a small character-level tokenizer and a
generation config; ``make_family`` saves a base and N SFT checkpoints of the same shape;
``make_reward_model`` a one-label sequence classifier; ``make_probe_inputs`` what a probe reads
(an actor, a reward model and a prompts file); ``write_arith_prompts`` and
:data:`TINY_BENCHMARKS` the prompts and benchmark section of a tiny sweep spec.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GenerationConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

ARCHITECTURES = ("llama", "qwen2")
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
VOCAB = (*SPECIAL_TOKENS, *string.ascii_lowercase, *string.digits, *" .,?!+-*=")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
DEFAULT_VOCAB_SIZE = 64


def tiny_config(
    arch: str = "llama",
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    hidden_size: int = 32,
    intermediate_size: int | None = None,
    num_layers: int = 2,
    tie_word_embeddings: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LlamaConfig | Qwen2Config:
    """A config for a tiny causal LM of the given architecture (``"llama"`` or ``"qwen2"``)."""
    common = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "tie_word_embeddings": tie_word_embeddings,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "dtype": dtype,
    }
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common, use_sliding_window=False)
    raise ValueError(f"unknown tiny architecture {arch!r}; use one of {ARCHITECTURES}")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over lowercase letters, digits and arithmetic symbols."""
    vocab = {token: index for index, token in enumerate(VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def make_checkpoint(
    path: str | Path,
    *,
    arch: str = "llama",
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    tie_word_embeddings: bool = False,
    max_shard_size: str | int | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    hidden_size: int = 32,
    intermediate_size: int | None = None,
    num_layers: int = 2,
    with_tokenizer: bool = True,
) -> Path:
    """Save a tiny random causal LM (plus tokenizer and generation config) to ``path``.

    Args:
        path: Output directory.
        arch: ``"llama"`` or ``"qwen2"``.
        seed: Seed of the random weights.
        dtype: Dtype of the saved weights.
        tie_word_embeddings: Share the input embeddings with the LM head (no ``lm_head``).
        max_shard_size: Shard the weights (e.g. ``"20KB"``); default one ``model.safetensors``.
        vocab_size: Vocabulary size (>= the tokenizer's 49 tokens).
        hidden_size: Hidden size (a multiple of 4).
        intermediate_size: MLP width (default twice the hidden size).
        num_layers: Number of decoder layers.
        with_tokenizer: Also save the character tokenizer.
    """
    path = Path(path)
    config = tiny_config(
        arch,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_layers=num_layers,
        tie_word_embeddings=tie_word_embeddings,
        dtype=dtype,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # Larger-than-default weights make merges and generations differ visibly between seeds.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.2)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, max_new_tokens=8
    )
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size is not None else {}
    model.save_pretrained(path, **kwargs)
    if with_tokenizer:
        tiny_tokenizer().save_pretrained(path)
    return path


def make_family(
    root: str | Path,
    *,
    n_sft: int = 2,
    seed: int = 0,
    **kwargs: object,
) -> tuple[Path, list[Path]]:
    """Save a base and ``n_sft`` SFT checkpoints of the same shape under ``root``.

    Keyword arguments go to :func:`make_checkpoint`. Returns ``(base, [sft_0, ...])``.
    """
    root = Path(root)
    base = make_checkpoint(root / "base", seed=seed, **kwargs)
    sfts = [
        make_checkpoint(root / f"sft{index}", seed=seed + 1 + index, **kwargs)
        for index in range(n_sft)
    ]
    return base, sfts


def make_reward_model(path: str | Path, *, seed: int = 11) -> Path:
    """A tiny random sequence-classification reward model (one label) with its tokenizer."""
    path = Path(path)
    config = tiny_config()
    config.num_labels = 1
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def make_probe_inputs(
    root: str | Path,
    prompts: Iterable[Mapping[str, object]],
    *,
    actor_seed: int,
    reward_seed: int,
) -> dict[str, Path]:
    """A float32 actor, a reward model and a JSONL file of ``prompts`` under ``root``.

    Returns the paths by role: ``actor``, ``reward`` and ``prompts``.
    """
    root = Path(root)
    actor = make_checkpoint(root / "actor", dtype=torch.float32, seed=actor_seed)
    reward = make_reward_model(root / "reward", seed=reward_seed)
    path = root / "prompts.jsonl"
    path.write_text("".join(json.dumps(dict(row)) + "\n" for row in prompts))
    return {"actor": actor, "reward": reward, "prompts": path}


#: A sweep spec's ``benchmarks`` section that scores a tiny model in seconds on the CPU.
TINY_BENCHMARKS: dict[str, object] = {
    "selection": ["bai_facts_mc"],
    "report": [],
    "limit": 2,
    "batch_size": 4,
    "device": "cpu",
}


def write_arith_prompts(path: str | Path, count: int) -> Path:
    """A JSONL file of ``count`` probe prompts ``what is n plus 2 ?``."""
    path = Path(path)
    path.write_text(
        "".join(json.dumps({"prompt": f"what is {n} plus 2 ?"}) + "\n" for n in range(count))
    )
    return path
