"""Rewards for the probe: reward-model checkpoints and rule-based Python functions.

TRL's PPO trainer scores a rollout with ``get_reward(model, query_responses, pad_id,
context_length)``: it calls the model's backbone (``getattr(model, model.base_model_prefix)``)
and then ``model.score`` on the last hidden states, and reads the score at each response's last
token. A reward model must therefore be a sequence-classification model with a ``score`` head and
one label; a rule-based reward is wrapped in :class:`RuleRewardModel`, a small module with the
same interface.

The reward model reads the very token ids the actor produced: the prompt in the sweep's prompt
format (chat template or raw, :mod:`evaluators.prompting`) followed by the response, so it must
share the actor's vocabulary (:func:`check_reward_vocabulary`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from evaluators.exceptions import EvaluatorError

__all__ = [
    "InvalidRewardError",
    "RewardFunction",
    "RuleRewardModel",
    "check_reward_model",
    "check_reward_vocabulary",
    "load_reward_model",
]

RewardFunction = Callable[[str, str], float]
"""A rule-based reward: ``fn(prompt, response) -> score`` on decoded text."""


class InvalidRewardError(EvaluatorError):
    """The reward is not a usable reward model or reward function."""


def check_reward_model(model: nn.Module) -> nn.Module:
    """Return ``model`` if PPO can score with it, else raise :class:`InvalidRewardError`."""
    prefix = getattr(model, "base_model_prefix", None)
    if not prefix or not isinstance(getattr(model, prefix, None), nn.Module):
        raise InvalidRewardError(
            f"reward model {type(model).__name__} has no backbone (base_model_prefix)"
        )
    if not isinstance(getattr(model, "score", None), nn.Module):
        raise InvalidRewardError(
            f"reward model {type(model).__name__} has no `score` head; PPO needs a "
            "sequence-classification model such as LlamaForSequenceClassification"
        )
    num_labels = getattr(getattr(model, "config", None), "num_labels", 1)
    if num_labels != 1:
        raise InvalidRewardError(f"reward model must have num_labels=1, got {num_labels}")
    return model


def check_reward_vocabulary(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse a reward model that cannot read every token id the actor may generate.

    PPO hands the reward model the actor's own token ids (the prompt in the sweep's format, then
    the response), so the two must share one vocabulary: an actor whose vocabulary was extended
    (``tokenizer_source: union``) needs a reward model with at least as many embedding rows.
    """
    rows = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        raise InvalidRewardError(
            f"the actor's tokenizer has {len(tokenizer)} tokens but the reward model only "
            f"{rows} embedding rows: give a reward model that shares the actor's vocabulary"
        )


def load_reward_model(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
) -> nn.Module:
    """Load a sequence-classification reward model (``num_labels=1``) from a local directory.

    Raises:
        InvalidRewardError: The directory is missing, unreadable or not a one-label
            sequence-classification checkpoint.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InvalidRewardError(f"reward model {path} is not a checkpoint directory")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if config.num_labels != 1:
            raise InvalidRewardError(
                f"reward model {path} has num_labels={config.num_labels}, need 1"
            )
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidRewardError(f"cannot load reward model {path}: {exc}") from None
    return check_reward_model(model)


class _TokenEcho(nn.Module):
    """Backbone of a rule reward: hands the token ids and their mask to the score head."""

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object
    ) -> BaseModelOutput:
        packed = torch.stack((input_ids, attention_mask.long()), dim=-1)
        return BaseModelOutput(hidden_states=(packed,))


class _RuleScore(nn.Module):
    """Score head of a rule reward: decodes prompt and response, calls the rule per row."""

    def __init__(
        self,
        function: RewardFunction,
        tokenizer: PreTrainedTokenizerBase,
        context_length: int,
        prompt_texts: Mapping[tuple[int, ...], str],
    ) -> None:
        super().__init__()
        self.function = function
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.prompt_texts = prompt_texts

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        ids, mask = packed[..., 0], packed[..., 1].bool()
        context = self.context_length
        values = []
        for row_ids, row_mask in zip(ids, mask, strict=True):
            prompt_ids = row_ids[:context][row_mask[:context]].tolist()
            prompt = self.prompt_texts.get(tuple(prompt_ids)) or self.tokenizer.decode(
                prompt_ids, skip_special_tokens=True
            )
            response = self.tokenizer.decode(
                row_ids[context:][row_mask[context:]].tolist(), skip_special_tokens=True
            )
            values.append(float(self.function(str(prompt), str(response))))
        scores = torch.tensor(values, dtype=torch.float32, device=packed.device)
        return scores[:, None, None].expand(-1, packed.shape[1], 1)


class RuleRewardModel(nn.Module):
    """A rule-based reward with the interface PPO expects from a reward model.

    Every position of a row gets the rule's score for that row, so whichever token the trainer
    reads the score at, it gets ``function(prompt, response)``.

    Args:
        function: ``fn(prompt, response) -> float``; the response is decoded text (special
            tokens skipped).
        tokenizer: Decodes the token ids.
        context_length: Width of the (left-padded) prompts; tokens after it are the response.
        prompt_texts: The original text of each prompt by its token ids (without padding);
            prompts not found here are decoded.
    """

    base_model_prefix = "tokens"

    def __init__(
        self,
        function: RewardFunction,
        tokenizer: PreTrainedTokenizerBase,
        context_length: int,
        prompt_texts: Mapping[tuple[int, ...], str] | None = None,
    ) -> None:
        super().__init__()
        self.tokens = _TokenEcho()
        self.score = _RuleScore(function, tokenizer, context_length, prompt_texts or {})
