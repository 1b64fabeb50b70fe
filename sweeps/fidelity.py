"""Successive halving for a multi-objective sweep: probe briefly, promote the best, rank high.

Optuna's pruners are single-objective, so this module does the multi-fidelity part itself, as
pure functions over plain data (nothing here knows Ray, Optuna or the database):

- :func:`schedule` turns the spec's ``fidelity`` section into *rungs* of increasing probe
  steps and seeds; the last rung is the spec's own ``probe.steps`` and ``probe.repeats``;
- :func:`promote` keeps the best ``1/eta`` of a rung's candidates (at least one) by
  non-dominated rank on their objective means, ties within a rank broken by crowding distance
  (the more isolated first: NSGA-II's rule), then by the caller's order;
- :func:`final_ranking` orders every candidate on the highest fidelity it reached: all of the
  top rung first (by rank and crowding among themselves), then those that stopped one rung
  lower, and so on — a low-fidelity score never outranks a high-fidelity one;
- :func:`spec_at` is the spec a rung's trial runs with.

How the runner will call it (not wired yet)::

    rungs = schedule(spec.fidelity, steps=spec.probe.steps, repeats=spec.probe.repeats)
    active = [sampled or seeded candidates, search.n_trials of them]
    reached = {}
    for rung in rungs:
        rung_spec = spec_at(spec, rung)
        scores = {c: run_trial(rung_spec, c).objectives for c in active}  # as Ray Tune trials
        reached.update({c: (rung.index, [s[n] for n in spec.objective_names])
                        for c, s in scores.items()})
        if rung.index == len(rungs) - 1:
            break
        active = promote({c: reached[c][1] for c in active}, spec.directions, eta=rung.eta)
    ranking = final_ranking(reached, spec.directions)

Only top-rung results should be told to Optuna as the objectives of record (or every rung's,
with the rung stored as a trial attribute, so the front is computed on the highest fidelity
reached); :func:`probe_updates` counts the PPO updates a schedule spends, for the comparison
with a full-fidelity sweep (``benchmarks/multifidelity.py``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sweeps.pareto import Direction, dominates

if TYPE_CHECKING:
    from sweeps.spec import FidelitySpec, SweepSpec

__all__ = [
    "Rung",
    "crowding_distances",
    "final_ranking",
    "non_dominated_ranks",
    "probe_updates",
    "promote",
    "promotion_count",
    "schedule",
    "spec_at",
]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Rung:
    """One fidelity level: its index (0 = the briefest), probe updates and seeds."""

    index: int
    steps: int
    repeats: int
    eta: int
    """The promotion rate out of this rung: keep ``1/eta`` of its candidates."""


def schedule(fidelity: FidelitySpec, *, steps: int, repeats: int) -> list[Rung]:
    """The rungs of ``fidelity`` for a probe of ``steps`` updates on ``repeats`` seeds.

    Rung ``r`` of ``R`` probes ``min_steps x eta^r`` updates (capped at ``steps``; the last rung
    always runs ``steps``) on ``min_repeats`` seeds growing linearly to ``repeats``.
    """
    count = fidelity.rungs
    low_steps = fidelity.resolved_min_steps(steps)
    low_repeats = min(fidelity.min_repeats, repeats)
    rungs = []
    for index in range(count):
        last = index == count - 1
        rung_steps = steps if last else min(steps, low_steps * fidelity.eta**index)
        share = index / (count - 1) if count > 1 else 1.0
        rung_repeats = round(low_repeats + (repeats - low_repeats) * share)
        rungs.append(Rung(index, rung_steps, rung_repeats, fidelity.eta))
    return rungs


def promotion_count(candidates: int, eta: int) -> int:
    """How many of ``candidates`` a rung promotes: ``floor(n / eta)``, at least one."""
    if eta < 2:
        raise ValueError(f"eta must be >= 2, got {eta}")
    return max(1, candidates // eta) if candidates else 0


def non_dominated_ranks(
    points: Sequence[Sequence[float]], directions: Sequence[Direction]
) -> list[int]:
    """Each point's non-dominated rank: 0 for the Pareto front, 1 for the front of the rest..."""
    ranks = [-1] * len(points)
    remaining = set(range(len(points)))
    rank = 0
    while remaining:
        layer = [
            i
            for i in remaining
            if not any(dominates(points[j], points[i], directions) for j in remaining if j != i)
        ]
        for i in layer:
            ranks[i] = rank
        remaining -= set(layer)
        rank += 1
    return ranks


def crowding_distances(
    points: Sequence[Sequence[float]], members: Sequence[int]
) -> dict[int, float]:
    """NSGA-II's crowding distance of each of ``members`` (indices into ``points``) within them.

    Per objective the members are sorted; the two extremes get infinity, every other member
    the gap between its neighbours over the objective's range. The distances are summed.
    """
    distance = {i: 0.0 for i in members}
    if len(members) <= 2:
        return {i: math.inf for i in members}
    for k in range(len(points[members[0]])):
        ordered = sorted(members, key=lambda i: points[i][k])
        low, high = points[ordered[0]][k], points[ordered[-1]][k]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, current, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            distance[current] += (points[after][k] - points[before][k]) / (high - low)
    return distance


def _order(keys: Sequence[K], points: Sequence[Sequence[float]], directions: Sequence[Direction]):
    ranks = non_dominated_ranks(points, directions)
    crowding: dict[int, float] = {}
    for rank in set(ranks):
        crowding.update(crowding_distances(points, [i for i, r in enumerate(ranks) if r == rank]))
    order = sorted(range(len(keys)), key=lambda i: (ranks[i], -crowding[i], i))
    return [keys[i] for i in order]


def promote(
    scores: Mapping[K, Sequence[float]],
    directions: Sequence[Direction],
    *,
    eta: int,
    count: int | None = None,
) -> list[K]:
    """The candidates promoted out of a rung, best first (see the module docstring).

    Args:
        scores: Each candidate's objective means at this rung, in the caller's order.
        directions: The objectives' directions.
        eta: Keep ``1/eta`` of the candidates (:func:`promotion_count`).
        count: Keep exactly this many instead.
    """
    keys = list(scores)
    keep = promotion_count(len(keys), eta) if count is None else count
    if keep < 0:
        raise ValueError(f"count must be >= 0, got {keep}")
    points = [list(scores[k]) for k in keys]
    if any(len(p) != len(directions) for p in points):
        raise ValueError("every candidate needs one value per objective")
    return _order(keys, points, directions)[:keep]


def final_ranking(
    reached: Mapping[K, tuple[int, Sequence[float]]], directions: Sequence[Direction]
) -> list[K]:
    """Every candidate, best first: by the highest rung reached (higher first), then by
    non-dominated rank and crowding among the candidates that stopped at the same rung.

    Args:
        reached: Per candidate, ``(highest rung index, objective means at that rung)``.
        directions: The objectives' directions.
    """
    out: list[K] = []
    for rung in sorted({level for level, _ in reached.values()}, reverse=True):
        keys = [k for k, (level, _) in reached.items() if level == rung]
        out += _order(keys, [list(reached[k][1]) for k in keys], directions)
    return out


def probe_updates(rungs: Sequence[Rung], candidates: int) -> int:
    """PPO updates a successive-halving sweep of ``candidates`` spends (steps x seeds summed
    over the candidates each rung probes)."""
    total = 0
    active = candidates
    for rung in rungs:
        total += active * rung.steps * rung.repeats
        active = promotion_count(active, rung.eta)
    return total


def spec_at(spec: SweepSpec, rung: Rung) -> SweepSpec:
    """``spec`` with the probe of ``rung`` (its steps and seeds)."""
    probe = spec.probe.model_copy(update={"steps": rung.steps, "repeats": rung.repeats})
    return spec.model_copy(update={"probe": probe})
