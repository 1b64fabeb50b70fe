"""Stability metrics on synthetic curves: hand-computed values and the expected ordering."""

from __future__ import annotations

import math

import pytest

from evaluators._probe_types import ProbeResponse, StepMetrics
from evaluators.stability import (
    compute_stability,
    correctness_retention,
    diverged_stability,
    entropy_drop,
    length_retention,
    length_trend,
    reward_dip,
    reward_recovery_steps,
    rolling_mean,
    stability_from_steps,
    stability_score,
)

STEPS = 10
# PPO's troubles start after a few updates: every curve is flat for its first window.
HOCKEY_REWARDS = [1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.5, 1.0, 1.0, 1.5]
KLS = [0.1 * step for step in range(STEPS)]
FLAT_ENTROPY = [1.0] * STEPS

CURVES = {
    "collapse": {
        "lengths": [40.0, 40.0, 40.0, 30.0, 20.0, 10.0, 8.0, 8.0, 8.0, 8.0],
        "rewards": [0.5] * STEPS,
        "entropies": [1.0, 1.0, 1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5],
    },
    "hockey_stick": {
        "lengths": [20.0] * STEPS,
        "rewards": HOCKEY_REWARDS,
        "entropies": FLAT_ENTROPY,
    },
    "flat": {"lengths": [20.0] * STEPS, "rewards": [0.5] * STEPS, "entropies": FLAT_ENTROPY},
    "healthy_growth": {
        "lengths": [20.0 + 2 * step for step in range(STEPS)],
        "rewards": [0.1 * step for step in range(STEPS)],
        "entropies": FLAT_ENTROPY,
    },
}


def _stability(name: str):
    curves = CURVES[name]
    return compute_stability(curves["lengths"], curves["rewards"], KLS, curves["entropies"])


def test_rolling_mean_over_full_windows() -> None:
    assert rolling_mean([1, 2, 3, 4], window=2) == [1.5, 2.5, 3.5]
    assert rolling_mean([3, 6, 9], window=3) == [6.0]
    assert rolling_mean([3, 6], window=3) == [4.5]  # shorter than a window: one mean
    assert rolling_mean([5], window=4) == [5.0]


def test_length_retention_hand_computed() -> None:
    lengths = [10, 8, 4, 4, 6]
    assert length_retention(lengths, window=1) == pytest.approx(0.4)
    # window 2: means 9, 6, 4, 5
    assert length_retention(lengths, window=2) == pytest.approx(4 / 9)
    # window 3: means 22/3, 16/3, 14/3
    assert length_retention(lengths, window=3) == pytest.approx(14 / 22)
    assert length_retention([10, 12, 14, 16]) == 1.0


def test_length_trend_is_relative_change_over_the_run() -> None:
    # slope 2 x 3 steps / initial level (window 3: 12; window 1: 10)
    assert length_trend([10, 12, 14, 16]) == pytest.approx(0.5)
    assert length_trend([10, 12, 14, 16], window=1) == pytest.approx(0.6)
    assert length_trend([16, 14, 12, 10]) == pytest.approx(-6 / 14)
    assert length_trend([7, 7, 7]) == 0.0
    assert length_trend([7]) == 0.0


def test_reward_dip_and_recovery_of_a_hockey_stick() -> None:
    # window 3 means (steps 2..9): 1, 5/6, 1/2, 1/6, 1/6, 1/2, 5/6, 7/6
    assert reward_dip(HOCKEY_REWARDS, window=3, scale=0.5) == pytest.approx((1 - 1 / 6) / 0.5)
    assert reward_recovery_steps(HOCKEY_REWARDS, window=3) == 9
    assert reward_recovery_steps(HOCKEY_REWARDS, window=1) == 7
    assert reward_dip(HOCKEY_REWARDS, window=1) == 1.0


def test_reward_recovery_none_if_never_back_and_zero_without_dip() -> None:
    assert reward_recovery_steps([1.0, 0.0, 0.0, 0.0], window=1) is None
    assert reward_dip([1.0, 0.0, 0.0, 0.0], window=1) == 1.0
    assert reward_recovery_steps([0.0, 1.0, 2.0]) == 0
    assert reward_dip([0.0, 1.0, 2.0]) == 0.0


def test_entropy_drop_is_the_fraction_lost() -> None:
    assert entropy_drop([2.0, 1.5, 1.0, 1.0], window=1) == pytest.approx(0.5)
    # window 2 means: 1.75, 1.25, 1
    assert entropy_drop([2.0, 1.5, 1.0, 1.0], window=2) == pytest.approx(0.75 / 1.75)
    assert entropy_drop([1.0, 1.2, 1.5]) == 0.0


def test_stability_score_hand_computed() -> None:
    neutral = {"length_trend": 0.0, "reward_dip": 0.0, "entropy_drop": 0.0}
    assert stability_score(length_retention=0.5, kl_max=0.0, **neutral) == pytest.approx(0.7)
    # KL twice the budget halves the score.
    assert stability_score(length_retention=0.5, kl_max=20.0, kl_budget=10.0, **neutral) == (
        pytest.approx(0.35)
    )
    best = stability_score(
        length_retention=1.0, length_trend=100.0, reward_dip=0.0, entropy_drop=0.0, kl_max=0.0
    )
    assert best == pytest.approx(1.0)
    worst = stability_score(
        length_retention=0.0, length_trend=-100.0, reward_dip=1e9, entropy_drop=1.0, kl_max=1e9
    )
    assert 0.0 <= worst < 1e-6


def test_stability_score_is_monotone_in_every_input() -> None:
    base = {
        "length_retention": 0.8,
        "length_trend": 0.1,
        "reward_dip": 0.5,
        "entropy_drop": 0.2,
        "kl_max": 5.0,
    }

    def score(**change: float) -> float:
        return stability_score(**{**base, **change})

    retentions = [score(length_retention=value) for value in (1.0, 0.8, 0.5, 0.2, 0.0)]
    dips = [score(reward_dip=value) for value in (0.0, 0.5, 1.0, 3.0)]
    trends = [score(length_trend=value) for value in (1.0, 0.0, -0.5, -1.0)]
    drops = [score(entropy_drop=value) for value in (0.0, 0.3, 1.0)]
    kls = [score(kl_max=value) for value in (1.0, 10.0, 20.0, 80.0)]
    for series in (retentions, dips, trends, drops):
        assert series == sorted(series, reverse=True) and len(set(series)) == len(series)
    assert kls[0] == kls[1] > kls[2] > kls[3]


def test_synthetic_curves_order_collapse_hockey_flat_growth() -> None:
    scores = {name: _stability(name) for name in CURVES}
    ordered = [scores[name].stability for name in CURVES]
    assert ordered == sorted(ordered)
    assert len(set(ordered)) == len(ordered)
    assert [scores[name].collapsed for name in CURVES] == [True, False, False, False]
    assert all(0.0 <= value <= 1.0 for value in ordered)


def test_synthetic_curves_exact_values() -> None:
    flat = _stability("flat")
    assert flat.stability == pytest.approx(0.45 + 0.075 + 0.25 + 0.15)
    assert (flat.length_retention, flat.length_trend, flat.reward_dip) == (1.0, 0.0, 0.0)

    growth = _stability("healthy_growth")
    assert growth.length_trend == pytest.approx(18 / 22)  # slope 2 x 9 steps / initial level 22
    assert growth.stability == pytest.approx(0.85 + 0.075 * (1 + math.tanh(18 / 22)))
    assert (growth.kl_max, growth.kl_final) == (pytest.approx(0.9), pytest.approx(0.9))

    hockey = _stability("hockey_stick")
    assert hockey.reward_dip == pytest.approx(5 / 6)  # window 3, scale 1
    assert hockey.reward_recovery_steps == 9
    assert hockey.stability == pytest.approx(0.675 + 0.25 * math.exp(-5 / 6))

    collapse = _stability("collapse")
    # window 3 length means: 40, 110/3, 30, 20, 38/3, 26/3, 8, 8 -> minimum 8 of 40.
    assert collapse.length_retention == pytest.approx(0.2)
    # entropy means: 1, 14/15, .8, 19/30, 16/30, .5, .5, .5 -> half the entropy is gone.
    assert collapse.entropy_drop == pytest.approx(0.5)
    assert collapse.steps == STEPS


def _step(step: int, length: float, reward: float, reward_std: float) -> StepMetrics:
    return StepMetrics(
        step=step,
        length_mean=length,
        length_p10=length,
        length_p50=length,
        length_p90=length,
        truncated_fraction=0.0,
        eos_rate=1.0,
        reward_mean=reward,
        reward_std=reward_std,
        rlhf_reward=reward,
        kl=0.0,
        entropy=length,
        token_entropy=1.0,
        policy_loss=0.0,
        value_loss=0.0,
        approx_kl=0.0,
        clip_fraction=0.0,
        elapsed_seconds=float(step),
    )


def test_stability_from_steps_measures_the_dip_in_initial_reward_spreads() -> None:
    steps = [_step(1, 10, 1.0, 0.25), _step(2, 10, 0.5, 0.3), _step(3, 10, 1.0, 0.2)]
    metrics = stability_from_steps(steps, window=1)
    assert metrics.reward_dip == pytest.approx(0.5 / 0.25)
    assert metrics.reward_recovery_steps == 2
    more = [*steps, _step(4, 10, 0.2, 0.1), _step(5, 10, 0.2, 0.1)]
    # window 2: initial level .75, spread (.25 + .3) / 2; minimum mean .2
    assert stability_from_steps(more, window=2).reward_dip == pytest.approx(0.55 / 0.275)
    no_spread = [_step(1, 10, 1.0, 0.0), _step(2, 10, 0.5, 0.0)]
    assert stability_from_steps(no_spread, window=1).reward_dip == pytest.approx(0.5)


def test_invalid_curves_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        rolling_mean([])
    with pytest.raises(ValueError, match="non-finite"):
        length_retention([10.0, math.nan])
    with pytest.raises(ValueError, match="differ"):
        compute_stability([1.0, 2.0], [1.0], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="scale"):
        reward_dip([1.0, 0.0], scale=0.0)
    with pytest.raises(ValueError, match="window"):
        rolling_mean([1.0], window=0)
    with pytest.raises(ValueError, match="no steps"):
        stability_from_steps([])


def test_length_retention_against_a_reference_length() -> None:
    # A flat actor that never reasons keeps its own length, but not a reasoning parent's.
    assert length_retention([10.0] * 5) == 1.0
    assert length_retention([10.0] * 5, reference=20.0) == pytest.approx(0.5)
    # Window means 12, 10, 8 -> min 8 against 16.
    assert length_retention([12, 12, 12, 6, 6], reference=16.0) == pytest.approx(0.5)
    # Longer than the reference counts as full retention.
    assert length_retention([30.0] * 4, reference=20.0) == 1.0
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="reference length"):
            length_retention([10.0] * 4, reference=bad)


def test_reference_length_makes_a_short_starter_collapsed() -> None:
    flat = CURVES["flat"]
    metrics = compute_stability(
        [5.0] * STEPS, flat["rewards"], KLS, flat["entropies"], reference_length=20.0
    )
    assert metrics.length_retention == pytest.approx(0.25)
    assert metrics.collapsed and metrics.reference_length == 20.0
    # 0.45 x 0.25 + 0.075 + 0.25 + 0.15
    assert metrics.stability == pytest.approx(0.5875)


def test_observed_fraction_credits_only_the_steps_that_ran() -> None:
    full = {"length_retention": 1.0, "length_trend": 0.0, "reward_dip": 0.0, "entropy_drop": 0.0}
    assert stability_score(**full, kl_max=0.0) == pytest.approx(0.925)
    # 0.45 + 0.5 x (0.075 + 0.25 + 0.15)
    assert stability_score(**full, kl_max=0.0, observed_fraction=0.5) == pytest.approx(0.6875)
    with pytest.raises(ValueError, match="observed_fraction"):
        stability_score(**full, kl_max=0.0, observed_fraction=1.5)


def test_an_early_stopped_probe_is_scored_on_its_configured_horizon() -> None:
    curves = CURVES["collapse"]
    args = (curves["lengths"], curves["rewards"], KLS, curves["entropies"])
    ran = compute_stability(*args)
    cut = compute_stability(*args, horizon=2 * STEPS)
    assert cut.horizon == 2 * STEPS and ran.horizon is None
    retention_term = 0.45 * ran.length_retention
    assert cut.stability == pytest.approx(retention_term + (ran.stability - retention_term) / 2)
    assert compute_stability(*args, horizon=STEPS) == ran
    with pytest.raises(ValueError, match="horizon"):
        compute_stability(*args, horizon=STEPS - 1)


def test_diverged_stability_scores_zero_and_keeps_the_metrics() -> None:
    metrics = _stability("flat")
    diverged = diverged_stability(metrics)
    assert diverged.stability == 0.0 and diverged.diverged and not metrics.diverged
    assert diverged.length_retention == metrics.length_retention


def _responses(*per_step: str) -> list[ProbeResponse]:
    """One step per string: 'r' a right answer, 'w' a wrong one, '?' an ungradable prompt."""
    out = []
    for step, marks in enumerate(per_step, start=1):
        for mark in marks:
            prompt = "unknown question" if mark == "?" else "q"
            response = "answer 1" if mark == "r" else "answer 2"
            out.append(
                ProbeResponse(
                    step=step,
                    prompt=prompt,
                    response=response,
                    response_ids=[1],
                    length=1,
                    truncated=False,
                    score=0.0,
                )
            )
    return out


def _grade(prompt: str, response: str) -> bool | None:
    """A fake grader for unit tests: the answer to 'q' is 1."""
    return None if prompt != "q" else response == "answer 1"


def test_correctness_retention_hand_computed() -> None:
    # First window (steps 1-2): 3 of 4 right; last window (steps 4-5): 1 of 4 right.
    result = correctness_retention(_responses("rr", "rw", "rr", "wr", "ww"), _grade, window=2)
    assert result == {
        "correct_start": 0.75,
        "correct_end": 0.25,
        "correctness_retention": pytest.approx(1 / 3),
    }
    # Gains are capped at full retention; nothing right at the start has nothing to lose.
    gained = correctness_retention(_responses("rw", "rr", "rr"), _grade, window=1)
    assert gained is not None and gained["correctness_retention"] == 1.0
    none_right = correctness_retention(_responses("ww", "ww"), _grade, window=1)
    assert none_right is not None and none_right["correctness_retention"] == 1.0
    assert none_right["correct_end"] == 0.0


def test_correctness_retention_needs_gradable_responses() -> None:
    assert correctness_retention(_responses("rr", "r?"), _grade, window=1) is None
    assert correctness_retention([], _grade) is None
    with pytest.raises(ValueError):
        correctness_retention(_responses("r"), _grade, window=0)
