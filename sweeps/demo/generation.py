"""Greedy generation, answer scoring and choice scoring on the demo task family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from evaluators.task_family import parse_answer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Generation:
    """One greedy response to a prompt."""

    prompt: str
    text: str
    """The decoded response, special tokens removed."""
    num_tokens: int
    """Response length in tokens, the closing eos included."""
    finished: bool
    """Whether the response ended with eos before ``max_new_tokens``."""


@dataclass(frozen=True)
class GenerationStats:
    """Accuracy and length of a batch of responses."""

    accuracy: float
    """Share of responses whose ``answer N`` is the right answer."""
    mean_length: float
    """Mean response length in tokens (eos included)."""
    finished_rate: float
    """Share of responses that ended with eos."""
    count: int


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int = 48,
    *,
    batch_size: int = 128,
) -> list[Generation]:
    """Greedy responses of ``model`` to ``prompts`` (left-padded batches, stop at eos)."""
    import torch

    was_training = model.training
    model.eval()
    results: list[Generation] = []
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            encoded = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left")
            encoded = {key: value.to(device) for key, value in encoded.items()}
            with torch.no_grad():
                output = cast(Any, model).generate(
                    **encoded,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=eos,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
            for prompt, tokens in zip(chunk, new_tokens, strict=True):
                finished = eos in tokens
                kept = tokens[: tokens.index(eos) + 1] if finished else tokens
                text = str(tokenizer.decode(kept, skip_special_tokens=True))
                results.append(Generation(prompt, text.strip(), len(kept), finished))
    finally:
        model.train(was_training)
    return results


def evaluate_generations(
    generations: Sequence[Generation], answers: Sequence[int | str]
) -> GenerationStats:
    """Accuracy (``parse_answer`` equals the answer), mean length and finished rate."""
    if len(generations) != len(answers):
        raise ValueError(f"{len(generations)} generations for {len(answers)} answers")
    if not generations:
        raise ValueError("no generations to evaluate")
    correct = sum(
        parse_answer(generation.text) == str(answer)
        for generation, answer in zip(generations, answers, strict=True)
    )
    count = len(generations)
    return GenerationStats(
        accuracy=correct / count,
        mean_length=sum(g.num_tokens for g in generations) / count,
        finished_rate=sum(g.finished for g in generations) / count,
        count=count,
    )


def choice_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[tuple[str, Sequence[str], int]],
    *,
    batch_size: int = 256,
) -> float:
    """Share of ``(context, choices, label)`` items whose right choice is the most likely.

    Each choice is scored as lm-eval's multiple-choice tasks do: the summed log-probability
    of ``" " + choice`` after the context.
    """
    import torch

    rows: list[tuple[list[int], int]] = []
    for context, choices, _ in items:
        prefix = tokenizer(context)["input_ids"]
        for choice in choices:
            continuation = tokenizer(choice, add_special_tokens=False)["input_ids"]
            rows.append((prefix + continuation, len(continuation)))
    scores: list[float] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for index, (row, _) in enumerate(chunk):
                ids[index, : len(row)] = torch.tensor(row)
                mask[index, : len(row)] = 1
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for index, (row, n_continuation) in enumerate(chunk):
                positions = range(len(row) - n_continuation, len(row))
                scores.append(sum(float(logprobs[index, p - 1, row[p]]) for p in positions))
    finally:
        model.train(was_training)
    correct = 0
    offset = 0
    for _, choices, label in items:
        chunk_scores = scores[offset : offset + len(choices)]
        offset += len(choices)
        correct += max(range(len(choices)), key=chunk_scores.__getitem__) == label
    return correct / len(items)
