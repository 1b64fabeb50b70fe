"""Dominance, non-dominated sorting and hypervolume against hand-computed cases."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from sweeps.pareto import dominates, hypervolume, non_dominated_sort, pareto_front

MAX2 = ("maximize", "maximize")


def test_dominance_respects_directions() -> None:
    assert dominates((0.5, 0.5), (0.4, 0.5), MAX2)
    assert not dominates((0.5, 0.5), (0.5, 0.5), MAX2)
    assert not dominates((0.6, 0.4), (0.4, 0.6), MAX2)
    assert dominates((0.5, 0.1), (0.5, 0.2), ("maximize", "minimize"))
    assert not dominates((0.5, 0.2), (0.5, 0.1), ("maximize", "minimize"))


def test_non_dominated_sort_ranks_fronts() -> None:
    points = [(0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.4, 0.4), (0.2, 0.2), (0.5, 0.5)]
    assert non_dominated_sort(points, MAX2) == [[0, 1, 2, 5], [3], [4]]
    assert pareto_front(points, MAX2) == [0, 1, 2, 5]


def test_nan_points_are_in_no_front() -> None:
    assert non_dominated_sort([(math.nan, 1.0), (0.5, 0.5)], MAX2) == [[1]]
    assert pareto_front([], MAX2) == []


def test_minimize_direction_flips_the_front() -> None:
    points = [(0.5, 0.2), (0.5, 0.1), (0.6, 0.3)]
    assert pareto_front(points, ("maximize", "minimize")) == [1, 2]
    assert pareto_front(points, ("maximize", "maximize")) == [2]


def test_hypervolume_two_objectives_by_hand() -> None:
    # Staircase of (0.2, 0.8), (0.5, 0.5), (0.8, 0.2) against (0, 0):
    # 0.2*0.8 + (0.5-0.2)*0.5 + (0.8-0.5)*0.2 = 0.16 + 0.15 + 0.06 = 0.37.
    points = [(0.2, 0.8), (0.5, 0.5), (0.8, 0.2)]
    assert hypervolume(points, (0.0, 0.0), MAX2) == pytest.approx(0.37)
    # Dominated and duplicate points add nothing.
    assert hypervolume([*points, (0.4, 0.4), (0.5, 0.5)], (0.0, 0.0), MAX2) == pytest.approx(0.37)
    assert hypervolume([(1.0, 1.0)], (0.0, 0.0), MAX2) == pytest.approx(1.0)


def test_hypervolume_ignores_points_not_better_than_the_reference() -> None:
    assert hypervolume([(0.5, 0.0)], (0.0, 0.0), MAX2) == 0.0
    assert hypervolume([(0.5, -0.2), (0.5, 0.4)], (0.0, 0.0), MAX2) == pytest.approx(0.2)
    assert hypervolume([], (0.0, 0.0), MAX2) == 0.0
    assert hypervolume([(math.nan, 0.5)], (0.0, 0.0), MAX2) == 0.0


def test_hypervolume_mixed_directions() -> None:
    # maximize benchmark (ref 0), minimize kl (ref 1): box (0.5 - 0) * (1 - 0.25).
    assert hypervolume([(0.5, 0.25)], (0.0, 1.0), ("maximize", "minimize")) == pytest.approx(0.375)


def test_hypervolume_three_objectives_by_hand() -> None:
    max3 = ("maximize",) * 3
    # Two boxes [0,1]x[0,1]x[0,0.5] and [0,0.5]x[0,0.5]x[0,1]: 0.5 + 0.25 - overlap 0.125.
    assert hypervolume([(1, 1, 0.5), (0.5, 0.5, 1)], (0, 0, 0), max3) == pytest.approx(0.625)
    assert hypervolume([(0.5, 0.5, 0.5)], (0, 0, 0), max3) == pytest.approx(0.125)


def test_hypervolume_one_objective() -> None:
    assert hypervolume([(0.3,), (0.6,)], (0.0,), ("maximize",)) == pytest.approx(0.6)


def _monte_carlo_union(boxes: list[tuple[float, ...]], samples: int, rng: random.Random) -> float:
    dims = len(boxes[0])
    inside = 0
    for _ in range(samples):
        x = [rng.random() for _ in range(dims)]
        if any(all(xi <= bi for xi, bi in zip(x, box, strict=True)) for box in boxes):
            inside += 1
    return inside / samples


def test_hypervolume_three_objectives_matches_inclusion_exclusion() -> None:
    rng = random.Random(3)
    points = [tuple(rng.random() for _ in range(3)) for _ in range(6)]
    exact = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = [min(p[d] for p in subset) for d in range(3)]
            exact += (-1) ** (size + 1) * math.prod(corner)
    assert hypervolume(points, (0, 0, 0), ("maximize",) * 3) == pytest.approx(exact)
    assert exact == pytest.approx(_monte_carlo_union(points, 20000, rng), abs=0.02)


def test_mismatched_lengths_and_unknown_directions_are_rejected() -> None:
    with pytest.raises(ValueError):
        hypervolume([(0.5,)], (0.0, 0.0), MAX2)
    with pytest.raises(ValueError):
        dominates((1, 1), (0, 0), ("up", "down"))  # type: ignore[arg-type]
