"""The probe's configuration and its per-step records (shared by the probe and its backends)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluators.exceptions import EvaluatorError
from evaluators.placement import Precision
from evaluators.stability import DEFAULT_COLLAPSE_THRESHOLD, DEFAULT_KL_BUDGET, DEFAULT_WINDOW

DEFAULT_REPEATS = 3
"""Seeds per candidate, from the measured noise (``benchmarks/probe_noise.py``, see
``docs/stability-metrics.md``): at the demo sweep's settings on the v2 demo world one actor's
stability moves by a standard deviation of 0.03-0.12 from seed to seed (pooled 0.07); two seeds
give a 95% interval of +-0.18 to +-0.78 (Student t with one degree of freedom), three give
+-0.06 to +-0.29, at or below the spread between candidates (0.28)."""
FORECAST_HORIZON_RATIO = 6
"""Default ``forecast_horizon`` in multiples of ``steps``: the ``benchmarks/probe_validity.py``
long runs are 6x the sweep's probe (issue 12's ">= 6x longer runs")."""


class ProbeConfig(BaseModel):
    """Settings of one stability probe: a short RLHF run on a candidate actor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = "trl-ppo"
    """Name of the probe backend (see ``evaluators.backends``)."""
    steps: int = Field(30, ge=1, le=100_000)
    """Number of RL updates (one rollout batch each)."""
    batch_size: int = Field(8, ge=2, le=65_536)
    """Prompts per rollout batch."""
    mini_batches: int = Field(1, ge=1, le=65_536)
    """Mini-batches each rollout batch is split into for the PPO updates."""
    ppo_epochs: int = Field(1, ge=1, le=1000)
    """Passes over each rollout batch."""
    response_length: int = Field(128, ge=1, le=1_048_576)
    """Maximum new tokens per response; a response without EOS is cut here (truncated). The
    longest prompt plus this must fit the actor's positions (the pre-flight checks it); the
    default fits the demo world (384 positions, prompts up to 13 tokens) and leaves room for
    its reasoning model's chains (59-116 tokens)."""
    temperature: float = Field(0.7, gt=0)
    """Sampling temperature of the rollouts."""
    kl_coef: float = Field(0.05, ge=0)
    """Coefficient of the KL penalty to the reference (the frozen initial actor)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """KL estimator (see TRL's PPOConfig)."""
    learning_rate: float = Field(3e-6, gt=0)
    """Constant learning rate of the actor and the value model."""
    seed: int = 0
    """Seed of sampling, data order and fresh weights (a CPU probe is deterministic)."""
    missing_eos_penalty: float | None = Field(None, gt=0)
    """Subtracted from the score of a response that never wrote EOS (None: no penalty)."""
    value_model: Literal["auto", "reward", "actor"] = "auto"
    """Initialise the value model from the reward model or from the actor's backbone with a
    fresh scalar head; ``auto`` uses the reward model when there is one."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when available, else the CPU."""
    precision: Precision = "auto"
    """Trained models keep float32 master weights; ``auto`` autocasts to bf16 on a GPU that
    supports it, ``bf16`` autocasts on any device, ``fp32`` never (see
    ``evaluators.placement``)."""
    gradient_checkpointing: bool = False
    """Trade compute for memory on large actors."""
    early_stop: bool = True
    """Stop as soon as a collapse is certain (the result is then flagged partial)."""
    collapse_threshold: float = Field(DEFAULT_COLLAPSE_THRESHOLD, gt=0, le=1)
    """Length retention below which the probe counts as collapsed."""
    stability_window: int = Field(DEFAULT_WINDOW, ge=1, le=100_000)
    """Rolling-mean window of the stability metrics, in steps."""
    kl_budget: float = Field(DEFAULT_KL_BUDGET, gt=0)
    """KL above which the stability score is scaled down."""
    responses_per_step: int | None = Field(None, ge=0)
    """Rollout responses kept in the result per step (None: all of them)."""
    repeats: int = Field(DEFAULT_REPEATS, ge=1, le=64)
    """Probes per candidate in a sweep, on seeds ``seed``, ``seed + 1``, ...: each objective is
    their mean with a confidence interval (``bai-sweep probe`` runs one, on ``seed``)."""
    length_reference: str = Field("parents", min_length=1, max_length=4096)
    """What a sweep measures ``length_retention`` against: ``parents``, the longest greedy
    response length of its SFT models on the probe prompts (computed once per sweep),
    ``initial``, the actor's own initial length (``bai-sweep probe`` always uses this), or the
    directory of a reference model sharing the actor's tokenizer, whose greedy length on the
    probe prompts is the reference (computed once per sweep; a spec's path is resolved like the
    model paths, confined to the model roots and checked by the pre-flight)."""
    forecast_horizon: int | None = Field(None, ge=1, le=100_000_000)
    """The update the length forecast predicts the mean response length at (the
    ``length_at_horizon`` objective, ``sweeps.forecast``): what a probe of that many updates
    would log at its last one. At least ``steps``; default :data:`FORECAST_HORIZON_RATIO` x
    ``steps`` (successive halving keeps the full probe's horizon at every rung)."""

    @property
    def resolved_forecast_horizon(self) -> int:
        """``forecast_horizon``, defaulted from ``steps``."""
        if self.forecast_horizon is not None:
            return self.forecast_horizon
        return FORECAST_HORIZON_RATIO * self.steps

    @property
    def reference_model(self) -> str | None:
        """The reference model's directory when ``length_reference`` names one, else None."""
        return None if self.length_reference in ("parents", "initial") else self.length_reference

    @property
    def informative_steps(self) -> int:
        """The fewest probe steps whose stability score tells candidates apart: two stability
        windows. With fewer the rolling means overlap so much that retention, reward dip and
        entropy drop compare a window with itself, and the score hardly moves."""
        return 2 * self.stability_window

    def short_window_warning(self) -> str | None:
        """A warning when ``steps`` is under :attr:`informative_steps`, else None."""
        if self.steps >= self.informative_steps:
            return None
        return (
            f"probe.steps ({self.steps}) is under two stability windows "
            f"(2 x probe.stability_window = {self.informative_steps}): the stability score "
            "can hardly tell candidates apart; raise probe.steps or lower stability_window"
        )

    @model_validator(mode="after")
    def _horizon_beyond_the_probe(self) -> ProbeConfig:
        if self.forecast_horizon is not None and self.forecast_horizon < self.steps:
            raise ValueError(
                f"forecast_horizon ({self.forecast_horizon}) is below steps ({self.steps}): a "
                "forecast predicts at or beyond the probe's last update"
            )
        return self

    @model_validator(mode="after")
    def _mini_batches_divide_batch(self) -> ProbeConfig:
        if self.batch_size % self.mini_batches:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of mini_batches "
                f"({self.mini_batches})"
            )
        return self


class StopReason(StrEnum):
    """Why a probe ended."""

    COMPLETED = "completed"
    """All configured steps ran."""
    COLLAPSED = "collapsed"
    """Stopped early: the response length collapsed beyond recovery of the verdict."""
    DIVERGED = "diverged"
    """Stopped: a loss or a logged statistic became NaN or infinite."""


class StepMetrics(BaseModel):
    """What one RL update measured (step 1's rollout comes from the untrained actor)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int
    """1-based update number."""
    length_mean: float
    """Mean response length in tokens, up to and including EOS (truncated: full length)."""
    length_p10: float
    length_p50: float
    length_p90: float
    truncated_fraction: float
    """Fraction of responses that never wrote EOS (cut at ``response_length``)."""
    eos_rate: float
    """Fraction of responses that ended with EOS (``1 - truncated_fraction``)."""
    reward_mean: float
    """Mean score the trainer used (reward model or rule, after any missing-EOS penalty)."""
    reward_std: float
    """Standard deviation of the per-response scores."""
    rlhf_reward: float
    """Mean score plus the (negative) KL penalty."""
    kl: float
    """Mean sequence KL between the actor and the reference on the rollouts."""
    entropy: float
    """Mean sequence entropy estimate (sum of -log p over the response tokens)."""
    token_entropy: float
    """``entropy / length_mean``: entropy per generated token."""
    policy_loss: float
    value_loss: float
    approx_kl: float
    """Mean approximate KL between the rollout policy and the updated policy."""
    clip_fraction: float
    """Fraction of policy-gradient terms clipped by PPO."""
    elapsed_seconds: float
    """Wall time since the probe started."""

    def non_finite_fields(self) -> list[str]:
        """Names of the fields holding NaN or an infinity."""
        return [
            name
            for name, value in self.model_dump().items()
            if isinstance(value, float) and not math.isfinite(value)
        ]


class ProbeResponse(BaseModel):
    """One recorded rollout response, exactly as the trainer scored it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int
    prompt: str
    response: str
    """Decoded response (special tokens skipped)."""
    response_ids: list[int]
    """Generated token ids up to and including EOS (all of them if truncated)."""
    length: int
    truncated: bool
    """True if the response never wrote EOS."""
    score: float
    """Score the trainer used for this response."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


class InvalidProbeInputError(EvaluatorError):
    """The probe's inputs (prompts, tokenizer, actor, reward) cannot be used together."""
