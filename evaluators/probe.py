"""The stability probe: a short RLHF run on a candidate actor, measured at every update.

:func:`run_probe` trains the actor with a probe backend (TRL's PPO by default), streams one
:class:`StepMetrics` per update to ``on_step``, stops early when the response length has
certainly collapsed, stops with :class:`ProbeDivergedError` when training turns NaN/inf, and
returns the curves, the recorded responses and the stability metrics of
``evaluators.stability``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from evaluators._probe_types import (
    InvalidProbeInputError,
    ProbeConfig,
    ProbeResponse,
    StepMetrics,
    StopReason,
)
from evaluators.backends import ProbeStop, get_backend
from evaluators.exceptions import EvaluatorError
from evaluators.prompting import PromptSettings, resolve_prompt_format
from evaluators.stability import StabilityMetrics, length_retention, stability_from_steps

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from evaluators.rewards import RewardFunction

__all__ = [
    "InvalidProbeInputError",
    "ProbeConfig",
    "ProbeDivergedError",
    "ProbeResponse",
    "ProbeResult",
    "StepMetrics",
    "StopReason",
    "load_prompts",
    "run_probe",
]

CURVES = ("length_mean", "reward_mean", "kl", "token_entropy")
"""The per-step fields the stability metrics are computed from."""


class ProbeResult(BaseModel):
    """Everything one probe measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: ProbeConfig
    steps: list[StepMetrics]
    """One entry per update, in order (a diverged probe's last entry holds the bad values)."""
    stability: StabilityMetrics | None
    """Metrics over the finite steps (None only if the very first update diverged)."""
    partial: bool
    """True when the probe stopped before ``config.steps`` updates."""
    stop_reason: StopReason
    detail: str | None = None
    """Why the probe stopped early, in words."""
    responses: list[ProbeResponse]
    """Recorded rollout responses (all of them unless ``config.responses_per_step`` is set)."""
    elapsed_seconds: float
    prompt_format: Literal["chat", "raw"] = "raw"
    """The format the prompts were presented in (``auto`` resolved for the tokenizer)."""
    system_prompt: str | None = None

    def curve(self, field: str) -> list[float]:
        """The per-step values of one :class:`StepMetrics` field, e.g. ``"length_mean"``."""
        return [float(getattr(step, field)) for step in self.steps]


class ProbeDivergedError(EvaluatorError):
    """The probe diverged: a loss or statistic became NaN or infinite."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__(f"probe diverged: {result.detail}")
        self.result = result
        """The partial result: every step up to and including the diverged one."""


def load_prompts(prompts: Sequence[str] | str | Path) -> list[str]:
    """Prompt texts from a list, or from a JSONL file of ``{"prompt": ...}`` lines.

    Raises:
        InvalidProbeInputError: The file is missing or malformed, or there are no prompts.
    """
    if isinstance(prompts, str | Path):
        path = Path(prompts)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidProbeInputError(f"cannot read prompts file {path}: {exc}") from None
        texts = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                texts.append(record["prompt"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InvalidProbeInputError(
                    f'{path}:{number}: expected a JSON object with a "prompt" string'
                ) from None
    else:
        texts = list(prompts)
    if not texts or not all(isinstance(text, str) and text.strip() for text in texts):
        raise InvalidProbeInputError("prompts must be a non-empty list of non-empty strings")
    return texts


def _resolve_reward(
    reward: str | Path | nn.Module | RewardFunction, trust_remote_code: bool
) -> nn.Module | RewardFunction:
    from torch import nn

    from evaluators.rewards import InvalidRewardError, check_reward_model, load_reward_model

    if isinstance(reward, str | Path):
        return load_reward_model(reward, trust_remote_code=trust_remote_code)
    if isinstance(reward, nn.Module):
        return check_reward_model(reward)
    if callable(reward):
        return reward
    raise InvalidRewardError(
        f"reward must be a checkpoint path, a reward model or a function, got {type(reward)}"
    )


def run_probe(
    actor: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward: str | Path | nn.Module | RewardFunction,
    prompts: Sequence[str] | str | Path,
    config: ProbeConfig | None = None,
    on_step: Callable[[StepMetrics], None] | None = None,
    *,
    prompt: PromptSettings | None = None,
    trust_remote_code: bool = False,
) -> ProbeResult:
    """Run a short RLHF probe on ``actor`` and score its stability.

    The actor is trained in place (build a fresh one per probe, e.g. with
    ``MergeInputs.build_actor``); the reference is a frozen copy of it taken at the start. A
    loaded reward model is only used for scoring (moved to the probe's device, float32 on CPU,
    dropout off), so one can be shared by many probes; the value model is a fresh copy.

    Args:
        actor: The in-memory causal LM to probe.
        tokenizer: Its tokenizer (EOS required; a missing pad token falls back to EOS).
        reward: A reward checkpoint directory (sequence classification, one label), a loaded
            reward model, or a rule ``fn(prompt, response) -> float``.
        prompts: Prompt texts, or a JSONL file of ``{"prompt": ...}`` lines.
        config: Probe settings (default :class:`ProbeConfig`).
        on_step: Called with each update's metrics as soon as it is measured; an exception it
            raises aborts the probe and propagates.
        prompt: The prompt format (default ``auto``: the chat template when the tokenizer has
            one); the reward model scores the same templated token ids.
        trust_remote_code: Passed to ``from_pretrained`` when ``reward`` is a path.

    Returns:
        The result; ``partial`` is set when a collapse stopped it early.

    Raises:
        ProbeDivergedError: Training became NaN/inf; ``error.result`` holds the steps so far.
        InvalidProbeInputError: Unusable prompts, tokenizer or settings.
        evaluators.prompting.PromptFormatError: A chat format without a chat template.
        evaluators.rewards.InvalidRewardError: Unusable reward.
    """
    config = config or ProbeConfig()
    texts = load_prompts(prompts)
    if len(texts) < config.batch_size:
        raise InvalidProbeInputError(
            f"{len(texts)} prompts is fewer than one batch (batch_size={config.batch_size})"
        )
    prompt = prompt or PromptSettings()
    prompt_format = resolve_prompt_format(tokenizer, prompt)
    backend = get_backend(config.backend)
    resolved_reward = _resolve_reward(reward, trust_remote_code)
    steps: list[StepMetrics] = []
    responses: list[ProbeResponse] = []

    def emit(metrics: StepMetrics, generated: list[ProbeResponse]) -> None:
        steps.append(metrics)
        keep = config.responses_per_step
        responses.extend(generated if keep is None else generated[:keep])
        if on_step is not None:
            on_step(metrics)
        bad = metrics.non_finite_fields()
        if bad:
            raise ProbeStop(
                StopReason.DIVERGED, f"{', '.join(bad)} not finite at step {metrics.step}"
            )
        if config.early_stop and metrics.step < config.steps:
            retention = length_retention(
                [step.length_mean for step in steps], config.stability_window
            )
            if retention < config.collapse_threshold:
                raise ProbeStop(
                    StopReason.COLLAPSED,
                    f"length collapsed at step {metrics.step}: retention {retention:.3f} < "
                    f"{config.collapse_threshold}",
                )

    started = time.perf_counter()
    reason, detail = StopReason.COMPLETED, None
    try:
        backend.run(
            actor=actor,
            tokenizer=tokenizer,
            reward=resolved_reward,
            prompts=texts,
            config=config,
            emit=emit,
            prompt=prompt,
        )
    except ProbeStop as stop:
        reason, detail = stop.reason, stop.detail
    finite = steps
    if reason is StopReason.DIVERGED:
        finite = steps[:-1] if steps and steps[-1].non_finite_fields() else steps
    stability = (
        stability_from_steps(
            finite,
            window=config.stability_window,
            collapse_threshold=config.collapse_threshold,
            kl_budget=config.kl_budget,
        )
        if finite
        else None
    )
    result = ProbeResult(
        config=config,
        steps=steps,
        stability=stability,
        partial=reason is not StopReason.COMPLETED,
        stop_reason=reason,
        detail=detail,
        responses=responses,
        elapsed_seconds=time.perf_counter() - started,
        prompt_format=prompt_format,
        system_prompt=prompt.system,
    )
    if reason is StopReason.DIVERGED:
        raise ProbeDivergedError(result)
    return result
