"""Stability metrics of an RLHF probe, computed from its per-step curves.

Every function here is pure: it takes the per-step curves of one probe (mean response length,
mean reward, KL, per-token entropy; index 0 is the rollout of the untrained actor) and returns
numbers. The formulas and their meaning are documented in ``docs/stability-metrics.md``.

Curves are smoothed with a trailing rolling mean over full windows of ``w`` steps (the whole
curve if it is shorter). The first window's mean is the curve's *initial level*; every fall is
measured from it, and minima are taken over windows of the same size, so that batch noise
weighs the same on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from evaluators._probe_types import ProbeResponse, StepMetrics

__all__ = [
    "DEFAULT_COLLAPSE_THRESHOLD",
    "DEFAULT_KL_BUDGET",
    "DEFAULT_WINDOW",
    "SCORE_WEIGHTS",
    "StabilityMetrics",
    "compute_stability",
    "correctness_retention",
    "diverged_stability",
    "entropy_drop",
    "length_retention",
    "length_trend",
    "reward_dip",
    "reward_recovery_steps",
    "rolling_mean",
    "stability_from_steps",
    "stability_score",
]

DEFAULT_WINDOW = 3
"""Steps in the trailing rolling mean that smooths the curves."""
DEFAULT_COLLAPSE_THRESHOLD = 0.5
"""A probe has collapsed when its length retention falls below this."""
DEFAULT_KL_BUDGET = 10.0
"""Sequence KL (nats) a probe may reach before the stability score is scaled down."""
SCORE_WEIGHTS = {"length_retention": 0.45, "length_trend": 0.15, "reward": 0.25, "entropy": 0.15}
"""Weights of the stability score's terms (they sum to 1)."""


class StabilityMetrics(BaseModel):
    """The stability summary of one probe (see ``docs/stability-metrics.md``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int
    """Number of steps the metrics were computed from."""
    length_retention: float
    """Minimum rolling-mean length / initial level, in [0, 1]; 1 = never shorter than at start."""
    length_trend: float
    """Least-squares slope of the length x (steps - 1) / initial level (relative change)."""
    reward_dip: float
    """Fall of the rolling-mean reward below its initial level, in units of ``reward_scale``."""
    reward_recovery_steps: int | None
    """Step at which the reward is back at its initial level (0: no dip; None: never)."""
    kl_max: float
    """Largest per-step KL to the reference."""
    kl_final: float
    """KL to the reference at the last step."""
    entropy_drop: float
    """Fraction of the initial per-token entropy lost at the rolling-mean minimum, in [0, 1]."""
    collapsed: bool
    """Whether the length retention fell below the collapse threshold."""
    stability: float
    """The combined score in [0, 1]; higher is more stable (0 for a diverged probe)."""
    reference_length: float | None = None
    """The length retention was measured against (None: the curve's own initial level)."""
    horizon: int | None = None
    """Steps the probe was configured for, when it stopped before them (None: it ran all)."""
    diverged: bool = False
    """Training became NaN/inf: the metrics describe the finite steps, the score is 0."""


def _check_curve(values: Sequence[float], name: str) -> list[float]:
    curve = [float(value) for value in values]
    if not curve:
        raise ValueError(f"{name} curve is empty")
    if not all(math.isfinite(value) for value in curve):
        raise ValueError(f"{name} curve has non-finite values")
    return curve


def rolling_mean(values: Sequence[float], window: int = DEFAULT_WINDOW) -> list[float]:
    """Means of every full trailing window; entry ``i`` ends at step ``i + window - 1``.

    A curve shorter than ``window`` gives one mean, of all its values.

    Args:
        values: The curve (at least one value).
        window: Window length in steps (>= 1).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    curve = _check_curve(values, "input")
    size = min(window, len(curve))
    return [sum(curve[end - size : end]) / size for end in range(size, len(curve) + 1)]


def length_retention(
    lengths: Sequence[float], window: int = DEFAULT_WINDOW, reference: float | None = None
) -> float:
    """Minimum rolling-mean length divided by a reference length, in [0, 1].

    Without ``reference`` the curve's own initial level is the reference: 1.0 means the
    (smoothed) length never fell below where it started; 0.3 means that at its shortest the
    actor wrote 30% of its initial length. With ``reference`` (e.g. the greedy length of the
    longest-reasoning parent on the same prompts) an actor that starts short already scores
    low: a starting point that never reasons cannot pass for one that kept its length.

    Args:
        lengths: Mean response length per step.
        window: Rolling-mean window.
        reference: The length that counts as full retention (positive), or None.
    """
    if reference is not None and (not math.isfinite(reference) or reference <= 0):
        raise ValueError(f"reference length must be a positive number, got {reference}")
    means = rolling_mean(lengths, window)
    level = means[0] if reference is None else reference
    if level <= 0:
        return 1.0
    return min(1.0, max(0.0, min(means) / level))


def length_trend(lengths: Sequence[float], window: int = DEFAULT_WINDOW) -> float:
    """Least-squares slope of the length curve x (steps - 1) / initial level.

    The relative length change over the run that a straight-line fit predicts: +0.5 means the
    actor's responses grew by half their initial length, -0.5 means they lost half of it.
    """
    curve = _check_curve(lengths, "length")
    count = len(curve)
    initial = rolling_mean(curve, window)[0]
    if count < 2 or initial <= 0:
        return 0.0
    mean_x = (count - 1) / 2
    mean_y = sum(curve) / count
    covariance = sum((index - mean_x) * (value - mean_y) for index, value in enumerate(curve))
    variance = sum((index - mean_x) ** 2 for index in range(count))
    return covariance / variance * (count - 1) / initial


def reward_dip(rewards: Sequence[float], window: int = DEFAULT_WINDOW, scale: float = 1.0) -> float:
    """How far the rolling-mean reward fell below its initial level, divided by ``scale``.

    Args:
        rewards: Mean reward per step.
        window: Rolling-mean window.
        scale: The unit of the dip (``stability_from_steps`` uses the spread of the untrained
            actor's rewards); must be positive.
    """
    if scale <= 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive number, got {scale}")
    means = rolling_mean(rewards, window)
    return max(0.0, means[0] - min(means)) / scale


def reward_recovery_steps(rewards: Sequence[float], window: int = DEFAULT_WINDOW) -> int | None:
    """The hockey stick's length: the step at which the reward regains its initial level.

    Returns 0 if the rolling-mean reward never fell below its initial level, the first step
    (0-based, the end of its window) after its minimum at which it is back at or above that
    level otherwise, and ``None`` if it never got back within the run.
    """
    means = rolling_mean(rewards, window)
    offset = len(rewards) - len(means)
    initial = means[0]
    lowest = min(means)
    if lowest >= initial:
        return 0
    bottom = means.index(lowest)
    for index in range(bottom + 1, len(means)):
        if means[index] >= initial:
            return index + offset
    return None


def entropy_drop(entropies: Sequence[float], window: int = DEFAULT_WINDOW) -> float:
    """Fraction of the initial per-token entropy lost at the rolling-mean minimum, in [0, 1]."""
    means = rolling_mean(entropies, window)
    initial = means[0]
    if initial <= 0:
        return 0.0
    return min(1.0, max(0.0, (initial - min(means)) / initial))


def stability_score(
    *,
    length_retention: float,
    length_trend: float,
    reward_dip: float,
    entropy_drop: float,
    kl_max: float,
    kl_budget: float = DEFAULT_KL_BUDGET,
    observed_fraction: float = 1.0,
) -> float:
    """Combine the metrics into one score in [0, 1] (higher is more stable).

    ``kl_factor x (0.45 retention + f x (0.15 (1 + tanh(trend)) / 2 + 0.25 exp(-dip)
    + 0.15 (1 - entropy_drop)))`` with ``kl_factor = min(1, kl_budget / kl_max)`` and ``f`` the
    ``observed_fraction`` of the configured steps that ran (1 unless the probe stopped early:
    what a probe did not run earns no credit). Every term is monotone: a lower retention, a
    falling length, a deeper reward dip, a larger entropy drop or a KL beyond the budget each
    lower the score.
    """
    if not 0.0 <= observed_fraction <= 1.0:
        raise ValueError(f"observed_fraction must be in [0, 1], got {observed_fraction}")
    weights = SCORE_WEIGHTS
    retention = min(1.0, max(0.0, length_retention))
    score = weights["length_retention"] * retention + observed_fraction * (
        weights["length_trend"] * (1.0 + math.tanh(length_trend)) / 2.0
        + weights["reward"] * math.exp(-max(0.0, reward_dip))
        + weights["entropy"] * (1.0 - min(1.0, max(0.0, entropy_drop)))
    )
    kl_factor = 1.0 if kl_max <= kl_budget else kl_budget / kl_max
    return min(1.0, max(0.0, score * kl_factor))


def compute_stability(
    lengths: Sequence[float],
    rewards: Sequence[float],
    kls: Sequence[float],
    entropies: Sequence[float],
    *,
    reward_scale: float = 1.0,
    window: int = DEFAULT_WINDOW,
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD,
    kl_budget: float = DEFAULT_KL_BUDGET,
    reference_length: float | None = None,
    horizon: int | None = None,
) -> StabilityMetrics:
    """All stability metrics of one probe from its curves (equal lengths, index 0 = untrained).

    Args:
        lengths: Mean response length per step.
        rewards: Mean reward score per step.
        kls: KL to the reference per step.
        entropies: Per-token entropy per step.
        reward_scale: Unit of ``reward_dip``.
        window: Rolling-mean window.
        collapse_threshold: ``collapsed`` is ``length_retention < collapse_threshold``.
        kl_budget: KL above which the score is scaled down.
        reference_length: Length of full retention (default: the curve's initial level).
        horizon: Steps the probe was configured for; a shorter curve (an early stop) earns
            the trend, reward and entropy terms only for the fraction of them it ran.
    """
    curves = {"length": lengths, "reward": rewards, "kl": kls, "entropy": entropies}
    sizes = {name: len(curve) for name, curve in curves.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"curves differ in length: {sizes}")
    kl_curve = _check_curve(kls, "kl")
    count = len(kl_curve)
    if horizon is not None and horizon < count:
        raise ValueError(f"horizon {horizon} is shorter than the {count} steps measured")
    cut = horizon is not None and horizon > count
    retention = length_retention(lengths, window, reference_length)
    trend = length_trend(lengths, window)
    dip = reward_dip(rewards, window, reward_scale)
    drop = entropy_drop(entropies, window)
    kl_max = max(kl_curve)
    return StabilityMetrics(
        steps=count,
        length_retention=retention,
        length_trend=trend,
        reward_dip=dip,
        reward_recovery_steps=reward_recovery_steps(rewards, window),
        kl_max=kl_max,
        kl_final=kl_curve[-1],
        entropy_drop=drop,
        collapsed=retention < collapse_threshold,
        stability=stability_score(
            length_retention=retention,
            length_trend=trend,
            reward_dip=dip,
            entropy_drop=drop,
            kl_max=kl_max,
            kl_budget=kl_budget,
            observed_fraction=count / horizon if horizon is not None and cut else 1.0,
        ),
        reference_length=reference_length,
        horizon=horizon if cut else None,
    )


def stability_from_steps(
    steps: Sequence[StepMetrics],
    *,
    window: int = DEFAULT_WINDOW,
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD,
    kl_budget: float = DEFAULT_KL_BUDGET,
    reference_length: float | None = None,
    horizon: int | None = None,
) -> StabilityMetrics:
    """:func:`compute_stability` on a probe's recorded steps.

    The reward dip is measured in units of the initial per-response reward spread (the mean
    ``reward_std`` of the first window's steps), or 1.0 if that spread is zero.
    """
    if not steps:
        raise ValueError("no steps to compute stability from")
    first = steps[: min(window, len(steps))]
    spread = sum(step.reward_std for step in first) / len(first)
    return compute_stability(
        [step.length_mean for step in steps],
        [step.reward_mean for step in steps],
        [step.kl for step in steps],
        [step.token_entropy for step in steps],
        reward_scale=spread if math.isfinite(spread) and spread > 0 else 1.0,
        window=window,
        collapse_threshold=collapse_threshold,
        kl_budget=kl_budget,
        reference_length=reference_length,
        horizon=horizon,
    )


def diverged_stability(metrics: StabilityMetrics) -> StabilityMetrics:
    """``metrics`` (of the finite steps before a divergence) with score 0, flagged diverged."""
    return metrics.model_copy(update={"stability": 0.0, "diverged": True})


def correctness_retention(
    responses: Sequence[ProbeResponse],
    grade: Callable[[str, str], bool | None],
    *,
    window: int = DEFAULT_WINDOW,
) -> dict[str, float] | None:
    """How much of its correctness the policy kept: the share of correct rollout responses over
    the last ``window`` steps against the first ``window`` steps.

    Returns ``{"correct_start", "correct_end", "correctness_retention"}`` with the retention
    ``min(1, end / start)`` (1 when the start had nothing correct to lose), or None when some
    response cannot be graded (``grade`` returns None: its prompt has no known answer) or there
    are no responses.

    Args:
        responses: The probe's recorded responses (each with its 1-based ``step``).
        grade: ``grade(prompt, response)``: True/False, or None when unknown.
        window: Steps at each end (the whole run when it is shorter than two windows: then
            both ends overlap, as the rolling means of the other metrics do).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not responses:
        return None
    grades = [grade(r.prompt, r.response) for r in responses]
    if any(g is None for g in grades):
        return None
    first_step = min(r.step for r in responses)
    last_step = max(r.step for r in responses)
    start = [g for r, g in zip(responses, grades, strict=True) if r.step < first_step + window]
    end = [g for r, g in zip(responses, grades, strict=True) if r.step > last_step - window]
    share_start = sum(bool(g) for g in start) / len(start)
    share_end = sum(bool(g) for g in end) / len(end)
    retention = 1.0 if share_start == 0 else min(1.0, share_end / share_start)
    return {
        "correct_start": share_start,
        "correct_end": share_end,
        "correctness_retention": retention,
    }
