"""The reward forecast on synthetic curves with known parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeps.forecast import MIN_STEPS, fit_reward_curve, saturating_curve


def _curve(asymptote: float, efficiency: float, midpoint: float, start: float, n: int):
    steps = list(range(1, n + 1))
    compute = np.array(steps, dtype=float) - 1
    return steps, saturating_curve(compute, asymptote, efficiency, midpoint, start)


def test_recovers_a_known_curve() -> None:
    steps, rewards = _curve(0.8, 1.5, 10.0, 0.1, 48)
    noisy = rewards + np.random.default_rng(0).normal(0.0, 0.01, len(rewards))
    noisy[0] = 0.1  # R0 is fixed at step 1
    forecast = fit_reward_curve(steps, noisy.tolist())
    assert forecast.reason is None
    assert forecast.asymptote == pytest.approx(0.8, abs=0.03)
    assert forecast.efficiency == pytest.approx(1.5, abs=0.3)
    assert forecast.midpoint == pytest.approx(10.0, abs=2.0)
    assert forecast.start == 0.1 and forecast.steps == 48
    assert forecast.asymptote_se is not None and 0 < forecast.asymptote_se < 0.05
    assert forecast.r2 is not None and forecast.r2 > 0.95


def test_exact_falling_curve() -> None:
    steps, rewards = _curve(-0.2, 2.0, 5.0, 0.6, 24)
    forecast = fit_reward_curve(steps, rewards.tolist())
    assert forecast.asymptote == pytest.approx(-0.2, abs=1e-3)
    assert forecast.efficiency == pytest.approx(2.0, abs=1e-2)


def test_refusals_say_why() -> None:
    short = fit_reward_curve(list(range(1, MIN_STEPS)), [0.1, 0.2, 0.3, 0.4, 0.5])
    assert short.asymptote is None and short.reason is not None and "too few" in short.reason
    flat = fit_reward_curve(list(range(1, 13)), [0.5] * 12)
    assert flat.asymptote is None and flat.reason == "flat reward: nothing to fit"
    noise = np.random.default_rng(1).normal(0.5, 0.05, 32).tolist()
    noisy = fit_reward_curve(list(range(1, 33)), noise)
    assert noisy.asymptote is None and noisy.reason is not None
    assert "no trend" in noisy.reason or "not saturating" in noisy.reason
    # A straight rise has not bent: its asymptote would be a guess.
    line = fit_reward_curve(list(range(1, 17)), [0.01 * s for s in range(1, 17)])
    assert line.asymptote is None and line.reason is not None
    assert "not saturating" in line.reason
    diverged = fit_reward_curve(list(range(1, 9)), [0.1, 0.2, 0.3] + [math.nan] * 5)
    assert diverged.asymptote is None and "too few" in (diverged.reason or "")
    assert diverged.to_json()["reason"] == diverged.reason
    with pytest.raises(ValueError):
        fit_reward_curve([1, 2], [0.1])
