"""Statistics of repeated probes on hand-computed cases."""

from __future__ import annotations

import pytest

from sweeps.pareto import hypervolume
from sweeps.statistics import (
    Interval,
    bootstrap_hypervolume,
    clearly_dominates,
    mean_interval,
    tied_set,
)

T_975_DF1 = 12.706204736  # Student t quantile 0.975 with 1 degree of freedom
T_975_DF4 = 2.776445105
Z_975 = 1.959963985


def test_mean_interval_of_two_seeds() -> None:
    # mean 2, sample sd sqrt(2), sem 1.
    interval = mean_interval([1.0, 3.0])
    assert (interval.mean, interval.sem, interval.n) == (2.0, pytest.approx(1.0), 2)
    assert interval.low == pytest.approx(2.0 - T_975_DF1)
    assert interval.high == pytest.approx(2.0 + T_975_DF1)


def test_measurement_error_adds_in_quadrature() -> None:
    # seed part 1, total sem^2 = 2, Welch-Satterthwaite df = 2^2 / (1^2 / 1) = 4.
    interval = mean_interval([1.0, 3.0], measurement_se=1.0)
    assert interval.sem == pytest.approx(2**0.5)
    assert interval.high == pytest.approx(2.0 + T_975_DF4 * 2**0.5)
    # Seeds that agree: only lm-eval's error is left, a normal interval.
    agreed = mean_interval([0.5, 0.5], measurement_se=0.1)
    assert agreed.high == pytest.approx(0.5 + Z_975 * 0.1)
    exact = mean_interval([0.5, 0.5])
    assert (exact.low, exact.high, exact.sem) == (0.5, 0.5, 0.0)


def test_one_seed_has_an_interval_only_with_a_measurement_error() -> None:
    bare = mean_interval([0.4])
    assert (bare.low, bare.high, bare.sem) == (None, None, None)
    assert bare.bounds() == (0.4, 0.4)
    measured = mean_interval([0.4], measurement_se=0.1)
    assert measured.low == pytest.approx(0.4 - Z_975 * 0.1)
    assert measured.high == pytest.approx(0.4 + Z_975 * 0.1)
    assert Interval.from_json(measured.to_json()) == measured


def test_mean_interval_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        mean_interval([])
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0], confidence=1.0)


def _box(mean: float, half: float | None) -> Interval:
    if half is None:
        return Interval(mean, None, None, None, 1)
    return Interval(mean, mean - half, mean + half, half / 2, 2)


def test_tied_set_is_what_the_intervals_cannot_tell_from_the_front() -> None:
    directions = ["maximize", "maximize"]
    candidates = [
        [_box(0.8, 0.01), _box(0.5, 0.01)],  # 0: front
        [_box(0.5, 0.01), _box(0.8, 0.01)],  # 1: front
        [_box(0.78, 0.05), _box(0.48, 0.05)],  # 2: below 0 on the means, overlapping in both
        [_box(0.3, 0.01), _box(0.3, 0.01)],  # 3: clearly below
        [_box(0.7, None), _box(0.45, None)],  # 4: one seed, apart from 0 in the first
    ]
    assert clearly_dominates(candidates[0], candidates[3], directions)
    assert not clearly_dominates(candidates[0], candidates[2], directions)
    assert clearly_dominates(candidates[0], candidates[4], directions)
    assert tied_set(candidates, [0, 1], directions) == [2]


def test_tied_set_minimized_objective() -> None:
    # kl minimised: 0.2 +- 0.05 against 0.3 +- 0.04 are apart (0.25 < 0.26).
    a = [_box(0.5, 0.01), _box(0.2, 0.05)]
    b = [_box(0.5, 0.01), _box(0.3, 0.04)]
    assert clearly_dominates(a, b, ["maximize", "minimize"])
    assert tied_set([a, b], [0], ["maximize", "minimize"]) == []


def test_bounded_interval_is_clipped_to_its_bounds() -> None:
    # mean 0.975, sem 0.025, t(1): 0.975 -/+ 0.31766 -> high 1.29 clipped to 1.
    interval = mean_interval([0.95, 1.0], bounds=(0.0, 1.0))
    assert interval.high == 1.0
    assert interval.low == pytest.approx(0.975 - T_975_DF1 * 0.025)
    assert interval.dof == 1.0
    assert mean_interval([0.0, 0.1], bounds=(0.0, None)).low == 0.0
    unbounded = mean_interval([0.95, 1.0])
    assert unbounded.high == pytest.approx(0.975 + T_975_DF1 * 0.025)


def test_degrees_of_freedom_are_kept_through_json() -> None:
    assert mean_interval([1.0, 3.0], measurement_se=1.0).dof == pytest.approx(4.0)
    normal = mean_interval([0.4], measurement_se=0.1)
    assert normal.dof == float("inf") and normal.to_json()["dof"] == "inf"
    assert Interval.from_json(normal.to_json()) == normal
    legacy = {"mean": 0.3, "low": 0.1, "high": 0.5, "sem": 0.1, "n": 2, "confidence": 0.95}
    assert Interval.from_json(legacy).draw_scale() == (0.1, 1.0)


def _measured(mean: float, sem: float | None, dof: float | None) -> Interval:
    return Interval(mean, None, None, sem, 2, dof=dof)


def test_bootstrap_hypervolume_of_one_candidate_is_its_own_interval() -> None:
    # Two seeds 0.2 and 0.4: mean 0.3, sem 0.1, t(1), so 0.3 -/+ 1.27 -> [0, 1] in bounds; the
    # hypervolume above reference 0 is the drawn value itself, so its interval is the same.
    seeds = mean_interval([0.2, 0.4], bounds=(0.0, 1.0))
    assert (seeds.low, seeds.high) == (0.0, 1.0)
    interval = bootstrap_hypervolume([[seeds]], [0.0], ["maximize"], bounds=[(0.0, 1.0)], seed=3)
    assert interval.mean == pytest.approx(0.3)
    assert (interval.low, interval.high) == (0.0, 1.0)


def test_bootstrap_hypervolume_of_a_normal_error() -> None:
    # HV = the drawn value 0.5 + 0.1 Z: percentiles 0.5 -/+ 1.96 x 0.1, sd 0.1 (Monte Carlo).
    interval = bootstrap_hypervolume(
        [[_measured(0.5, 0.1, float("inf"))]], [0.0], ["maximize"], resamples=20000, seed=1
    )
    assert interval.low == pytest.approx(0.5 - Z_975 * 0.1, abs=0.01)
    assert interval.high == pytest.approx(0.5 + Z_975 * 0.1, abs=0.01)
    assert interval.sem == pytest.approx(0.1, abs=0.005)


def test_bootstrap_hypervolume_is_reproducible_and_brackets_the_estimate() -> None:
    candidates = [
        [mean_interval([0.8, 0.7]), mean_interval([0.5, 0.4])],
        [mean_interval([0.5, 0.6, 0.4]), mean_interval([0.8, 0.9, 0.7])],
        [mean_interval([0.6]), mean_interval([0.6])],
    ]
    reference, directions = [0.0, 0.0], ["maximize", "maximize"]
    bounds = [(0.0, 1.0), (0.0, 1.0)]
    first = bootstrap_hypervolume(
        candidates, reference, directions, bounds=bounds, seed=7, resamples=200
    )
    again = bootstrap_hypervolume(
        candidates, reference, directions, bounds=bounds, seed=7, resamples=200
    )
    assert first == again
    means = [[0.75, 0.45], [0.5, 0.8], [0.6, 0.6]]
    assert first.mean == pytest.approx(hypervolume(means, reference, directions))
    assert first.low is not None and first.high is not None
    assert 0.0 <= first.low < first.mean < first.high <= 1.0
    fixed = bootstrap_hypervolume(
        [[mean_interval([0.6]), mean_interval([0.6])]], reference, directions, resamples=20
    )
    assert (fixed.low, fixed.high) == (pytest.approx(0.36), pytest.approx(0.36))
