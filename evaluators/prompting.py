"""The prompt format of a sweep: raw text or the tokenizer's chat template, used everywhere.

An instruct or reasoning model answers what it was trained on: a chat-templated conversation.
The probe's rollouts, the reward model's inputs (the very token ids the actor generated from)
and the lm-eval tasks (``apply_chat_template``, few-shot examples as turns) must therefore all see
the same format. :class:`PromptSettings` is that one choice; :func:`resolve_prompt_format` turns
``auto`` into ``chat`` or ``raw`` for a given tokenizer, and :func:`render_prompt` formats a
prompt. This module imports neither torch nor transformers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluators.exceptions import EvaluatorError

__all__ = [
    "PromptFormat",
    "PromptFormatError",
    "PromptSettings",
    "encode_prompt",
    "has_chat_template",
    "render_prompt",
    "resolve_prompt_format",
]

PromptFormat = Literal["auto", "chat", "raw"]


class PromptFormatError(EvaluatorError):
    """The prompt format cannot be used with this tokenizer."""


class PromptSettings(BaseModel):
    """How prompts are presented to the models of a sweep (probe, reward model, benchmarks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: PromptFormat = Field(
        default="auto",
        description="`chat`: the tokenizer's chat template (a user turn, then the assistant's "
        "generation prompt); `raw`: the text as is; `auto`: chat when the tokenizer has a chat "
        "template, else raw.",
    )
    system: str | None = Field(
        default=None,
        min_length=1,
        description="Optional system prompt (chat format only).",
    )


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_prompt_format(tokenizer: Any, settings: PromptSettings) -> Literal["chat", "raw"]:
    """``chat`` or ``raw`` for ``tokenizer``.

    Raises:
        PromptFormatError: ``chat`` was asked of a tokenizer without a chat template, or a
            system prompt was given for raw prompts.
    """
    templated = has_chat_template(tokenizer)
    if settings.format == "chat" and not templated:
        raise PromptFormatError(
            "prompt format 'chat' needs a tokenizer with a chat template; this one has none "
            "(use 'raw' or 'auto')"
        )
    resolved: Literal["chat", "raw"] = (
        "chat" if settings.format == "chat" or (settings.format == "auto" and templated) else "raw"
    )
    if resolved == "raw" and settings.system is not None:
        raise PromptFormatError(
            "a system prompt needs the chat format, but prompts are raw here "
            f"(format {settings.format!r}, tokenizer {'with' if templated else 'without'} "
            "a chat template)"
        )
    return resolved


def render_prompt(tokenizer: Any, text: str, settings: PromptSettings) -> str:
    """``text`` as the model should see it: as is, or a templated user turn (with the system
    prompt, if any) followed by the assistant's generation prompt.

    The result already holds the template's special tokens: tokenise it with
    ``add_special_tokens=False`` when it is templated.
    """
    if resolve_prompt_format(tokenizer, settings) == "raw":
        return text
    messages = [{"role": "user", "content": text}]
    if settings.system is not None:
        messages.insert(0, {"role": "system", "content": settings.system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: Any, text: str, settings: PromptSettings) -> list[int]:
    """The token ids of ``text`` in the prompt format: raw text with the tokenizer's special
    tokens, or the rendered template (which holds its own)."""
    chat = resolve_prompt_format(tokenizer, settings) == "chat"
    rendered = render_prompt(tokenizer, text, settings)
    return list(tokenizer(rendered, add_special_tokens=not chat)["input_ids"])
