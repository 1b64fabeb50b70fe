"""The probe backend interface: what the probe asks of an RL algorithm implementation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from evaluators._probe_types import ProbeConfig, ProbeResponse, StepMetrics, StopReason

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from evaluators.prompting import PromptSettings
    from evaluators.rewards import RewardFunction

StepSink = Callable[[StepMetrics, list[ProbeResponse]], None]
"""Receives each update's metrics and generations; may raise :class:`ProbeStop`."""


class ProbeStop(Exception):
    """Ends a probe before its last step (raised by the step sink or by a backend)."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ProbeBackend(ABC):
    """One RL algorithm that can run a short probe on an in-memory actor.

    A backend trains ``actor`` in place for ``config.steps`` updates and, after every update,
    calls ``emit(metrics, generations)`` with that update's :class:`StepMetrics` and every
    response it generated. It lets :class:`ProbeStop` raised by ``emit`` propagate, and raises
    ``ProbeStop(StopReason.DIVERGED, ...)`` itself when training fails numerically. Everything
    else (early stopping, divergence checks, stability metrics, the result) is the probe's job.
    """

    name: ClassVar[str]
    """Registry name, e.g. ``"trl-ppo"``."""

    @abstractmethod
    def run(
        self,
        *,
        actor: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        reward: nn.Module | RewardFunction,
        prompts: Sequence[str],
        config: ProbeConfig,
        emit: StepSink,
        prompt: PromptSettings | None = None,
    ) -> None:
        """Train ``actor`` on ``prompts`` against ``reward``, emitting every update.

        Args:
            actor: The causal LM to train (modified in place).
            tokenizer: The actor's tokenizer.
            reward: A sequence-classification reward model or a rule-based function.
            prompts: Prompt texts (at least ``config.batch_size``).
            config: Probe settings.
            emit: Called once per update, in order.
            prompt: The prompt format (default: ``auto``); a backend presents every prompt to
                the actor, and so to the reward model, in this format
                (:func:`evaluators.prompting.render_prompt`).
        """
