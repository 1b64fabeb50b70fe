"""The built-in probe backend: TRL's ``PPOTrainer`` (``trl.experimental.ppo``, trl 1.10-1.12).

PPOTrainer logs KL, entropy, scores and losses once per update but not the response length,
and never exposes its rollouts. This backend sees them where the trainer scores them: the
reward model is wrapped in a recording module, so every response is recorded exactly as the
trainer scored it (truncated after the first EOS), with its score. A ``TrainerCallback``'s
``on_log`` (called once per update) turns that update's recordings and log into a
:class:`StepMetrics` and emits it.

``get_reward`` does not tell the reward model where the prompt ends, so prompts are left-padded
to one common width: every rollout's first ``context_length`` tokens are the prompt.
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from datasets import Dataset
from torch import nn
from transformers import PrinterCallback, TrainerCallback, set_seed

with warnings.catch_warnings():
    # PPO exists only in trl.experimental (trl 1.10-1.12); the pin makes that a known choice.
    warnings.filterwarnings("ignore", message=".*trl.experimental.*")
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.utils import create_reference_model, first_true_indices

from evaluators._probe_types import (
    InvalidProbeInputError,
    ProbeConfig,
    ProbeResponse,
    StepMetrics,
    StopReason,
    percentile,
)
from evaluators.backends._base import ProbeBackend, ProbeStop, StepSink
from evaluators.placement import plan_placement
from evaluators.placement import resolve_device as placement_device
from evaluators.prompting import PromptSettings, encode_prompt
from evaluators.rewards import RewardFunction, RuleRewardModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# What torch.multinomial says when the weights of the actor have become NaN/inf.
_SAMPLING_FAILURE = "probability tensor contains"


def resolve_device(requested: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a config's ``device`` (``auto``: CUDA when available)."""
    try:
        return placement_device(requested)
    except ValueError as exc:
        raise InvalidProbeInputError(str(exc)) from None


def _tokenizer_with_pad(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.eos_token_id is None:
        raise InvalidProbeInputError("the tokenizer has no EOS token; responses could never end")
    if tokenizer.pad_token_id is not None:
        return tokenizer
    padded = copy.deepcopy(tokenizer)
    padded.pad_token = padded.eos_token
    return padded


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    prompt: PromptSettings | None = None,
) -> tuple[list[list[int]], dict[tuple[int, ...], str]]:
    """Tokenise ``prompts`` in the prompt format, left-padded to one width.

    Raw prompts get the tokenizer's special tokens; chat prompts are the rendered template
    (which holds its own). Returns the padded token ids and each prompt's original text by its
    unpadded token ids (so a rule reward sees the question, not the template around it).
    """
    prompt = prompt or PromptSettings()
    encoded = [encode_prompt(tokenizer, text, prompt) for text in prompts]
    if not all(encoded):
        raise InvalidProbeInputError("a prompt tokenises to nothing")
    width = max(len(ids) for ids in encoded)
    padded = [[tokenizer.pad_token_id] * (width - len(ids)) + ids for ids in encoded]
    texts = {tuple(ids): prompt for ids, prompt in zip(encoded, prompts, strict=True)}
    return padded, texts


def _value_model(
    actor: PreTrainedModel, reward: nn.Module | RewardFunction, config: ProbeConfig
) -> nn.Module:
    source = config.value_model
    if source == "auto":
        source = "reward" if isinstance(reward, nn.Module) else "actor"
    if source == "reward":
        if not isinstance(reward, nn.Module):
            raise InvalidProbeInputError("value_model='reward' needs a reward model, not a rule")
        return copy.deepcopy(reward).requires_grad_(True)
    from transformers import AutoModelForSequenceClassification

    value_config = copy.deepcopy(actor.config)
    value_config.num_labels = 1
    value = AutoModelForSequenceClassification.from_config(value_config, dtype=actor.dtype)
    value.base_model.load_state_dict(actor.base_model.state_dict())
    return value


class _RolloutRecorder:
    """Collects what the reward model scored during one update's rollout."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        context_length: int,
        missing_eos_penalty: float | None,
        prompt_texts: dict[tuple[int, ...], str],
    ) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.prompt_texts = prompt_texts
        self.missing_eos_penalty = missing_eos_penalty
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rows: list[tuple[list[int], list[int], float]] = []

    def see_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self._inputs = (input_ids, attention_mask)

    def see_logits(self, logits: torch.Tensor) -> None:
        if self._inputs is None:
            raise RuntimeError("reward score head called without its backbone")
        input_ids, attention_mask = self._inputs
        self._inputs = None
        mask = attention_mask.bool()
        context = self.context_length
        # get_reward masked the pads to 0; put the pad id back to see the scored sequence.
        tokens = torch.where(mask, input_ids, self.tokenizer.pad_token_id)
        # The same token get_reward reads the score at: the last one before the first pad.
        first_pad = first_true_indices(~mask[:, context:])
        rows = torch.arange(logits.shape[0], device=logits.device)
        scores = logits[rows, first_pad - 1 + context].squeeze(-1).float()
        for row, score in zip(tokens.tolist(), scores.tolist(), strict=True):
            self._rows.append((row[:context], row[context:], score))

    def drain(self, step: int) -> list[ProbeResponse]:
        """This update's responses (up to and including EOS), then forget them."""
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        generations = []
        for query, response, raw_score in self._rows:
            prompt_ids = [token for token in query if token != pad]
            truncated = eos not in response
            length = len(response) if truncated else response.index(eos) + 1
            score = raw_score
            if truncated and self.missing_eos_penalty is not None:
                score -= self.missing_eos_penalty
            generations.append(
                ProbeResponse(
                    step=step,
                    prompt=self.prompt_texts.get(tuple(prompt_ids))
                    or self.tokenizer.decode(prompt_ids, skip_special_tokens=True),
                    response=self.tokenizer.decode(response[:length], skip_special_tokens=True),
                    response_ids=response[:length],
                    length=length,
                    truncated=truncated,
                    score=score,
                )
            )
        self._rows = []
        return generations


class _RecordingBackbone(nn.Module):
    def __init__(self, inner: nn.Module, recorder: _RolloutRecorder) -> None:
        super().__init__()
        self.inner = inner
        self.recorder = recorder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        self.recorder.see_inputs(input_ids, attention_mask)
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class _RecordingScore(nn.Module):
    def __init__(self, inner: nn.Module, recorder: _RolloutRecorder) -> None:
        super().__init__()
        self.inner = inner
        self.recorder = recorder

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        logits = self.inner(hidden_states)
        self.recorder.see_logits(logits)
        return logits


class _RecordingReward(nn.Module):
    """A reward model that records every sequence it scores (same computation, same result)."""

    base_model_prefix: ClassVar[str] = "backbone"

    def __init__(self, reward: nn.Module, recorder: _RolloutRecorder) -> None:
        super().__init__()
        prefix = str(reward.base_model_prefix)
        self.backbone = _RecordingBackbone(getattr(reward, prefix), recorder)
        self.score = _RecordingScore(cast(nn.Module, reward.score), recorder)


def _population_std(values: Sequence[float]) -> float:
    """Population standard deviation that lets NaN/inf through (``statistics`` raises)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((value - mean) ** 2 for value in values) / len(values))


def step_metrics(
    step: int, logs: dict[str, float], generations: Sequence[ProbeResponse], elapsed: float
) -> StepMetrics:
    """One update's :class:`StepMetrics` from PPOTrainer's log and the recorded rollout."""
    lengths = [float(generation.length) for generation in generations]
    truncated = sum(generation.truncated for generation in generations) / len(generations)
    length_mean = statistics.fmean(lengths)
    entropy = float(logs["objective/entropy"])
    return StepMetrics(
        step=step,
        length_mean=length_mean,
        length_p10=percentile(lengths, 10),
        length_p50=percentile(lengths, 50),
        length_p90=percentile(lengths, 90),
        truncated_fraction=truncated,
        eos_rate=1.0 - truncated,
        reward_mean=float(logs["objective/scores"]),
        reward_std=_population_std([generation.score for generation in generations]),
        rlhf_reward=float(logs["objective/rlhf_reward"]),
        kl=float(logs["objective/kl"]),
        entropy=entropy,
        token_entropy=entropy / length_mean,
        policy_loss=float(logs["loss/policy_avg"]),
        value_loss=float(logs["loss/value_avg"]),
        approx_kl=float(logs["policy/approxkl_avg"]),
        clip_fraction=float(logs["policy/clipfrac_avg"]),
        elapsed_seconds=elapsed,
    )


class _EmitEachUpdate(TrainerCallback):
    """Turns PPOTrainer's once-per-update log plus the recorded rollout into a step."""

    def __init__(self, recorder: _RolloutRecorder, emit: StepSink) -> None:
        self.recorder = recorder
        self.emit = emit
        self.started = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not logs or "objective/kl" not in logs:
            return
        generations = self.recorder.drain(state.global_step)
        elapsed = time.perf_counter() - self.started
        self.emit(step_metrics(state.global_step, logs, generations, elapsed), generations)


def ppo_config(config: ProbeConfig, output_dir: str, device: str) -> PPOConfig:
    """The ``PPOConfig`` of a probe: ``config.steps`` updates of ``config.batch_size`` prompts."""
    with warnings.catch_warnings():
        # PPOConfig itself still passes the deprecated `gradient_checkpointing` name.
        warnings.filterwarnings(
            "ignore", message=".*gradient_checkpointing.*", category=FutureWarning
        )
        return PPOConfig(
            output_dir=output_dir,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            # Mixed precision is the backend's own autocast (see TrlPpoBackend.run).
            bf16=False,
            use_cpu=device == "cpu",
            seed=config.seed,
            learning_rate=config.learning_rate,
            lr_scheduler_type="constant",
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=1,
            gradient_checkpointing=config.gradient_checkpointing,
            num_mini_batches=config.mini_batches,
            num_ppo_epochs=config.ppo_epochs,
            total_episodes=config.steps * config.batch_size,
            local_rollout_forward_batch_size=config.batch_size,
            num_sample_generations=0,
            response_length=config.response_length,
            temperature=config.temperature,
            kl_coef=config.kl_coef,
            kl_estimator=config.kl_estimator,
            missing_eos_penalty=config.missing_eos_penalty,
            stop_token="eos",
        )


class TrlPpoBackend(ProbeBackend):
    """PPO with TRL's ``PPOTrainer``: frozen deep copy of the actor as reference, value model
    from the reward model (or the actor's backbone); devices and dtypes from
    :func:`evaluators.placement.plan_placement` (float32 master weights, bf16 autocast on CUDA)."""

    name = "trl-ppo"

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
        """Train ``actor`` in place with PPO; see :class:`ProbeBackend`."""
        device = resolve_device(config.device)
        tokenizer = _tokenizer_with_pad(tokenizer)
        queries, prompt_texts = encode_prompts(tokenizer, prompts, prompt)
        context_length = len(queries[0])
        max_positions = getattr(actor.config, "max_position_embeddings", None)
        if max_positions is not None and context_length + config.response_length > max_positions:
            raise InvalidProbeInputError(
                f"prompts ({context_length} tokens) plus response_length "
                f"({config.response_length}) exceed the actor's {max_positions} positions"
            )
        set_seed(config.seed)
        reward_model = (
            reward
            if isinstance(reward, nn.Module)
            else RuleRewardModel(reward, tokenizer, context_length, prompt_texts)
        )
        # PPOTrainer builds its own Accelerator without mixed precision (so `bf16=True` in its
        # config does nothing): float32 master weights and autocast are set up here instead.
        placement = plan_placement(device, config.precision)
        placement.place_trained(actor)
        placement.place_frozen(reward_model)
        value_model = placement.place_trained(_value_model(actor, reward, config))
        reference = placement.place_frozen(create_reference_model(actor))
        recorder = _RolloutRecorder(
            tokenizer, context_length, config.missing_eos_penalty, prompt_texts
        )
        with tempfile.TemporaryDirectory(prefix="bai-probe-") as output_dir:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                # TRL annotates these as PreTrainedModel but needs only the module interface
                # (a backbone under ``base_model_prefix`` and a ``score`` head).
                trainer = PPOTrainer(
                    args=ppo_config(config, output_dir, device),
                    processing_class=tokenizer,
                    model=actor,
                    ref_model=cast(Any, reference),
                    reward_model=cast(Any, _RecordingReward(reward_model, recorder)),
                    train_dataset=Dataset.from_dict({"input_ids": queries}),
                    value_model=cast(Any, value_model),
                    callbacks=[_EmitEachUpdate(recorder, emit)],
                )
            trainer.remove_callback(PrinterCallback)
            try:
                with warnings.catch_warnings():
                    # TRL logs the variance of a single PPO ratio statistic when it has one.
                    warnings.filterwarnings("ignore", message=".*degrees of freedom.*")
                    with placement.autocast():
                        trainer.train()
            except RuntimeError as exc:
                if _SAMPLING_FAILURE not in str(exc):
                    raise
                raise ProbeStop(
                    StopReason.DIVERGED,
                    f"sampling failed, the actor's weights are not finite: {exc}",
                ) from exc
