"""Plain torch training loops for the demo world: causal-LM pretraining and SFT."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

IGNORE_INDEX = -100
OnStep = Callable[[int, float], None]


def _optimise(
    model: PreTrainedModel,
    loss_of_step: Callable[[int], torch.Tensor],
    *,
    steps: int,
    learning_rate: float,
    warmup: int,
    on_step: OnStep | None,
    weight_decay: float = 0.01,
) -> float:
    """AdamW with linear warm-up and cosine decay to 10%; returns the mean loss of the tail."""
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, betas=(0.9, 0.98), weight_decay=weight_decay
    )

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    tail: list[float] = []
    for step in range(steps):
        loss = loss_of_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        tail = [*tail[-19:], value]
        if on_step is not None:
            on_step(step, value)
    model.eval()
    return sum(tail) / max(1, len(tail))


def pack_documents(
    documents: Sequence[str], tokenizer: PreTrainedTokenizerFast, block_size: int
) -> torch.Tensor:
    """``<bos> doc <eos>`` for every document, concatenated and cut into ``block_size`` rows."""
    ids: list[int] = []
    for encoded in tokenizer(list(documents), verbose=False)["input_ids"]:
        ids += [*encoded, tokenizer.eos_token_id]
    rows = len(ids) // block_size
    return torch.tensor(ids[: rows * block_size], dtype=torch.long).view(rows, block_size)


def pretrain(
    model: PreTrainedModel,
    blocks: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    rng: random.Random,
    on_step: OnStep | None = None,
) -> float:
    """Causal-LM training on packed ``blocks``; returns the final mean loss."""

    def loss_of_step(_: int) -> torch.Tensor:
        rows = torch.tensor(rng.sample(range(blocks.shape[0]), batch_size))
        batch = blocks[rows]
        return model(input_ids=batch, labels=batch).loss

    return _optimise(
        model,
        loss_of_step,
        steps=steps,
        learning_rate=learning_rate,
        warmup=max(1, steps // 20),
        on_step=on_step,
    )


def encode_examples(
    examples: Sequence[tuple[str, str]], tokenizer: PreTrainedTokenizerFast
) -> list[tuple[list[int], list[int]]]:
    """``(prompt ids with <bos>, response ids with <eos>)`` for each (question, response)."""
    prompts = tokenizer([question for question, _ in examples])["input_ids"]
    answers = tokenizer([response for _, response in examples], add_special_tokens=False)
    return [
        (prompt, [*response, tokenizer.eos_token_id])
        for prompt, response in zip(prompts, answers["input_ids"], strict=True)
    ]


def _right_padded(rows: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row)
        mask[index, : len(row)] = 1
    return ids, mask


def supervised_finetune(
    model: PreTrainedModel,
    examples: Sequence[tuple[list[int], list[int]]],
    *,
    pad_token_id: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    rng: random.Random,
    on_step: OnStep | None = None,
) -> float:
    """SFT on (prompt, response) id pairs with the loss on the response tokens only.

    No weight decay: a gentle fine-tune moves only what the data asks for, so the task vector
    stays small (weights no example touches keep the base's values).
    """

    def loss_of_step(_: int) -> torch.Tensor:
        batch = rng.sample(examples, batch_size)
        ids, mask = _right_padded([prompt + response for prompt, response in batch], pad_token_id)
        labels = torch.full_like(ids, IGNORE_INDEX)
        for index, (prompt, response) in enumerate(batch):
            labels[index, len(prompt) : len(prompt) + len(response)] = torch.tensor(response)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    return _optimise(
        model,
        loss_of_step,
        steps=steps,
        learning_rate=learning_rate,
        warmup=max(1, steps // 10),
        on_step=on_step,
        weight_decay=0.0,
    )


NUMBER_PERIODS = (2, 5, 10, 25, 50, 100, 200)


def seed_number_embeddings(
    model: PreTrainedModel, token_values: dict[int, int], scale: float = 0.1
) -> None:
    """Write Fourier features of each number's value into its input and output embeddings.

    Large pretrained models represent numbers with periodic features of their value and add
    with them (Zhou et al., 2024, "Pre-trained LLMs use Fourier features to compute addition");
    seeding those features stands in for the pretraining a CPU-minute budget cannot afford.
    """
    ids = torch.tensor(list(token_values))
    values = torch.tensor(list(token_values.values()), dtype=torch.float32)
    angles = 2 * math.pi * values[:, None] / torch.tensor(NUMBER_PERIODS, dtype=torch.float32)
    features = scale * torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    with torch.no_grad():
        embeddings = (model.get_input_embeddings(), model.get_output_embeddings())
        for embedding in cast(tuple[Any, Any], embeddings):
            embedding.weight[ids, : features.shape[1]] = features
