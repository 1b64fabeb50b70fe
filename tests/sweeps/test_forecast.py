"""The reward and length forecasts on synthetic curves with known parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeps.forecast import (
    MIN_STEPS,
    fit_length_curve,
    fit_reward_curve,
    forecasts_of,
    saturating_curve,
)


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


# --- the length forecast ------------------------------------------------------------------


def test_a_growing_length_is_forecast_at_the_horizon_with_its_error() -> None:
    steps, lengths = _curve(100.0, 1.5, 8.0, 40.0, 30)
    noisy = lengths + np.random.default_rng(0).normal(0.0, 1.0, len(lengths))
    noisy[0] = 40.0
    forecast = fit_length_curve(steps, noisy.tolist(), horizon=180, max_length=128)
    assert forecast.reason is None and forecast.fitted and not forecast.fallback
    expected = saturating_curve(179.0, 100.0, 1.5, 8.0, 40.0)
    assert forecast.horizon == 180
    assert forecast.at_horizon == pytest.approx(expected, abs=3.0)
    assert forecast.value == forecast.at_horizon
    assert forecast.observed == pytest.approx(float(np.mean(noisy[-3:])))
    # The fit's error at the horizon (delta method): positive, small beside the 60-token gain.
    assert forecast.at_horizon_se is not None and 0 < forecast.at_horizon_se < 5
    assert forecast.to_json()["at_horizon"] == forecast.at_horizon


def test_the_error_at_the_horizon_is_the_delta_method() -> None:
    from sweeps.forecast import _curve_gradient

    params = (100.0, 1.5, 8.0, 40.0)
    gradient = _curve_gradient(179.0, *params)
    step = 1e-6
    for index in range(3):
        moved = list(params)
        moved[index] += step
        numeric = (saturating_curve(179.0, *moved) - saturating_curve(179.0, *params)) / step
        assert gradient[index] == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def test_a_collapsing_length_is_forecast_low_and_stays_in_range() -> None:
    steps, lengths = _curve(10.0, 2.0, 5.0, 80.0, 24)
    forecast = fit_length_curve(steps, lengths.tolist(), horizon=144, max_length=128)
    assert forecast.fitted and forecast.asymptote == pytest.approx(10.0, abs=0.1)
    assert forecast.at_horizon == pytest.approx(saturating_curve(143.0, 10.0, 2.0, 5.0, 80.0))
    assert forecast.value is not None and forecast.start == 80.0 and forecast.value < 80.0
    # A curve heading past the cut at response_length: the asymptote is held within it.
    steps, lengths = _curve(200.0, 2.0, 6.0, 60.0, 24)
    capped = np.minimum(lengths, 128.0)
    bounded = fit_length_curve(steps, capped.tolist(), horizon=144, max_length=128)
    assert bounded.fitted and bounded.asymptote is not None and bounded.asymptote <= 128.0
    assert bounded.at_horizon is not None and bounded.at_horizon <= 128.0


def test_refused_length_fits_fall_back_to_the_observed_value() -> None:
    flat = fit_length_curve(list(range(1, 13)), [50.0] * 12, horizon=72, max_length=128)
    assert flat.reason == "flat length: nothing to fit" and not flat.fitted
    assert flat.fallback and flat.value == flat.observed == 50.0
    assert flat.at_horizon is None and flat.horizon == 72
    noise = np.random.default_rng(2).normal(50.0, 3.0, 30).tolist()
    noisy = fit_length_curve(list(range(1, 31)), noise, horizon=180, max_length=128, window=4)
    assert noisy.fallback and noisy.reason is not None
    assert "of the length's variance" in noisy.reason or "not saturating" in noisy.reason
    assert noisy.value == pytest.approx(sum(noise[-4:]) / 4)
    # A diverged probe: the last window of finite steps is the observed value.
    cut = fit_length_curve(
        list(range(1, 9)), [60.0, 55.0, 50.0, 45.0] + [math.nan] * 4, horizon=48, max_length=128
    )
    assert cut.fallback and cut.reason == "too few finite steps to fit (4 < 6)"
    assert cut.value == pytest.approx(50.0)  # steps 2-4, the default window of 3
    nothing = fit_length_curve([1, 2], [math.nan, math.nan], horizon=12, max_length=128)
    assert nothing.value is None and nothing.fallback


def test_the_reward_forecast_falls_back_too() -> None:
    steps, rewards = _curve(0.8, 1.5, 10.0, 0.1, 48)
    fitted = fit_reward_curve(steps, rewards.tolist())
    assert not fitted.fallback and fitted.value == fitted.asymptote and fitted.horizon is None
    flat = fit_reward_curve(list(range(1, 13)), [0.5] * 12)
    assert flat.fallback and flat.value == 0.5 and flat.asymptote is None


def test_forecasts_of_a_stored_record() -> None:
    stability = {
        "reward_forecast": {"seeds_fitted": 0, "seeds": 2, "reasons": ["flat reward: nothing"]},
        "length_forecast": {"seeds_fitted": 3, "seeds": 3, "reasons": [], "horizon": 48},
    }
    assert forecasts_of(stability) == {
        "reward_asymptote": {
            "seeds_fitted": 0,
            "seeds": 2,
            "fallback": True,
            "reasons": ["flat reward: nothing"],
            "horizon": None,
        },
        "length_at_horizon": {
            "seeds_fitted": 3,
            "seeds": 3,
            "fallback": False,
            "reasons": [],
            "horizon": 48,
        },
    }
    assert forecasts_of(None) == {} and forecasts_of({"reward_forecast": [1, 2]}) == {}
