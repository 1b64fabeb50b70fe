"""Pareto dominance, non-dominated sorting and hypervolume for 1-3 (or more) objectives.

Directions are ``"maximize"`` or ``"minimize"`` per objective. Internally every objective is
turned into a minimisation by negating the maximised ones.

Hypervolume reference point: a fixed, spec-level value per objective (``Objective.reference``
in :mod:`sweeps.spec`), never derived from the trials, so that the hypervolumes of two sweeps of
the same spec are comparable night after night. The defaults are the worst end of each metric's
range: 0 for the maximised ``stability`` and ``benchmark`` (both lie in [0, 1]), 0 for
``reward_gain`` (a point that lost reward adds no volume) and 1 nat for the minimised ``kl``.
A point that does not strictly improve on the reference in every objective adds no volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Direction = Literal["maximize", "minimize"]


def _as_minimized(point: Sequence[float], directions: Sequence[Direction]) -> tuple[float, ...]:
    if len(point) != len(directions):
        raise ValueError(
            f"point {tuple(point)} has {len(point)} values for {len(directions)} objectives"
        )
    return tuple(-v if d == "maximize" else v for v, d in zip(point, directions, strict=True))


def _check_directions(directions: Sequence[Direction]) -> None:
    for direction in directions:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"unknown direction {direction!r}")


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[Direction]) -> bool:
    """True if ``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    _check_directions(directions)
    ma, mb = _as_minimized(a, directions), _as_minimized(b, directions)
    return all(x <= y for x, y in zip(ma, mb, strict=True)) and any(
        x < y for x, y in zip(ma, mb, strict=True)
    )


def non_dominated_sort(
    points: Sequence[Sequence[float]], directions: Sequence[Direction]
) -> list[list[int]]:
    """Split point indices into fronts: front 0 is the Pareto front, front 1 the next, ...

    Points with a NaN value are left out of every front.
    """
    _check_directions(directions)
    valid = [i for i, p in enumerate(points) if not any(math.isnan(v) for v in p)]
    dominated_by_count = {i: 0 for i in valid}
    dominating: dict[int, list[int]] = {i: [] for i in valid}
    for a in valid:
        for b in valid:
            if a != b and dominates(points[a], points[b], directions):
                dominating[a].append(b)
                dominated_by_count[b] += 1
    fronts: list[list[int]] = []
    current = [i for i in valid if dominated_by_count[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for a in current:
            for b in dominating[a]:
                dominated_by_count[b] -= 1
                if dominated_by_count[b] == 0:
                    following.append(b)
        current = sorted(following)
    return fronts


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[Direction]) -> list[int]:
    """Indices of the non-dominated points (duplicates of a front point are all kept)."""
    fronts = non_dominated_sort(points, directions)
    return fronts[0] if fronts else []


def hypervolume(
    points: Sequence[Sequence[float]],
    reference: Sequence[float],
    directions: Sequence[Direction],
) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (see module docstring).

    Exact, by slicing along the last objective (HSO); fine for the few dozen points and 2-3
    objectives of a sweep.
    """
    _check_directions(directions)
    ref = _as_minimized(reference, directions)
    boxes = []
    for point in points:
        p = _as_minimized(point, directions)
        if any(math.isnan(v) for v in p):
            continue
        if all(v < r for v, r in zip(p, ref, strict=True)):
            boxes.append(p)
    return _hso(boxes, ref)


def _hso(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        area, best_y = 0.0, ref[1]
        for x, y in sorted(points):
            if y < best_y:
                area += (ref[0] - x) * (best_y - y)
                best_y = y
        return area
    # Slice along the last objective: between consecutive levels the dominated region is the
    # (d-1)-dimensional hypervolume of the points at or below the lower level.
    ordered = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for k, point in enumerate(ordered):
        upper = ordered[k + 1][-1] if k + 1 < len(ordered) else ref[-1]
        depth = upper - point[-1]
        if depth > 0:
            volume += depth * _hso([p[:-1] for p in ordered[: k + 1]], ref[:-1])
    return volume
