"""Successive halving for a multi-objective sweep: probe briefly, promote the best, rank high.

Optuna's pruners are single-objective, so this module does the multi-fidelity part itself, as
pure functions over plain data (nothing here knows Ray, Optuna or the database):

- :func:`schedule` turns the spec's ``fidelity`` section into *rungs* of increasing probe
  steps and seeds; the last rung is the spec's own ``probe.steps`` and ``probe.repeats``;
- :func:`promote` keeps the best ``1/eta`` of a rung's candidates (at least one) by
  non-dominated rank on their objective means. The rank that does not fit whole is cut by
  hypervolume against the spec's reference point (the subset of it that adds the most volume
  to the better ranks: SMS-EMOA's selection; exhaustive for small rungs, greedy for large),
  since the front's hypervolume is what a sweep is judged by; without a reference point, and
  among equal volumes, by crowding distance (the more isolated first: NSGA-II's rule), then
  by the caller's order;
- :func:`final_ranking` orders every candidate on the highest fidelity it reached: all of the
  top rung first (by rank and crowding among themselves), then those that stopped one rung
  lower, and so on — a low-fidelity score never outranks a high-fidelity one;
- :func:`spec_at` is the spec a rung's trial runs with.

How the runner calls it (:mod:`sweeps.runner`, through :func:`sweeps._study.next_stage`):
each probe is one Optuna / Ray Tune trial recording its rung and its *candidate* (the number
of the candidate's rung-0 trial). Before each stage the runner derives the state of the
ladder from the finished trials alone (:func:`next_rung`), so a sweep killed mid-rung resumes
where it was: rung 0 samples ``search.n_trials`` candidates (seed points first, as without
fidelity); once every probe of a rung finished, the candidates :func:`promote` keeps among
its complete ones (feasible first) are enqueued with fixed ratios for the next rung's probe.
Every rung's values are told to Optuna with the rung as a user attribute; the front, the
recommendation and the nightly comparison use the top rung reached only
(:meth:`sweeps.reports.SweepReportData.scored_trials`, the first group of
:func:`final_ranking`). :func:`probe_updates` counts the PPO updates a schedule spends, for
the comparison with a full-fidelity sweep (``benchmarks/multifidelity.py``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sweeps.pareto import Direction, dominates, hypervolume

if TYPE_CHECKING:
    from sweeps.spec import FidelitySpec, SweepSpec

__all__ = [
    "Probe",
    "Rung",
    "RungPlan",
    "crowding_distances",
    "final_ranking",
    "next_rung",
    "non_dominated_ranks",
    "planned_runs",
    "probe_updates",
    "promote",
    "promotion_count",
    "scaled_down",
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
    eta: float
    """The promotion rate out of this rung: keep ``1/eta`` of its candidates (a fraction such
    as 2.5 allowed: :func:`promotion_count`)."""


def schedule(fidelity: FidelitySpec, *, steps: int, repeats: int) -> list[Rung]:
    """The rungs of ``fidelity`` for a probe of ``steps`` updates on ``repeats`` seeds.

    Rung ``r`` of ``R`` probes ``min_steps x eta^r`` updates (rounded half up, capped at
    ``steps``; the last rung always runs ``steps``) on ``min_repeats`` seeds growing linearly to
    ``repeats``.
    """
    count = fidelity.rungs
    low_steps = fidelity.resolved_min_steps(steps)
    low_repeats = min(fidelity.min_repeats, repeats)
    rungs = []
    for index in range(count):
        last = index == count - 1
        rung_steps = (
            steps if last else min(steps, math.floor(low_steps * fidelity.eta**index + 0.5))
        )
        share = index / (count - 1) if count > 1 else 1.0
        rung_repeats = round(low_repeats + (repeats - low_repeats) * share)
        rungs.append(Rung(index, rung_steps, rung_repeats, fidelity.eta))
    return rungs


#: Slack for ``n / eta`` landing a rounding error below a whole number (8 / (8 / 3)).
_FLOOR_SLACK = 1e-9


def promotion_count(candidates: int, eta: float) -> int:
    """How many of ``candidates`` a rung promotes: ``floor(n / eta)``, at least one (eta may
    be a fraction: 2.5 keeps 3 of 8, where 2 keeps 4 and 3 keeps 2)."""
    if eta <= 1:
        raise ValueError(f"eta must be > 1, got {eta}")
    return scaled_down(candidates, eta) if candidates else 0


def scaled_down(count: int, factor: float) -> int:
    """``floor(count / factor)``, at least one (a quotient a rounding error below a whole
    number counts as that number)."""
    return max(1, math.floor(count / factor + _FLOOR_SLACK))


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


def _order_indices(
    points: Sequence[Sequence[float]], directions: Sequence[Direction]
) -> tuple[list[int], list[int]]:
    """Indices by non-dominated rank, then crowding (more isolated first), then position;
    and each point's rank."""
    ranks = non_dominated_ranks(points, directions)
    crowding: dict[int, float] = {}
    for rank in set(ranks):
        crowding.update(crowding_distances(points, [i for i, r in enumerate(ranks) if r == rank]))
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowding[i], i)), ranks


def _order(keys: Sequence[K], points: Sequence[Sequence[float]], directions: Sequence[Direction]):
    order, _ = _order_indices(points, directions)
    return [keys[i] for i in order]


#: Above this many subsets the hypervolume cut is greedy instead of exhaustive.
_EXACT_CUT_SUBSETS = 5_000


def _hypervolume_cut(
    points: Sequence[Sequence[float]],
    directions: Sequence[Direction],
    reference: Sequence[float],
    keep: int,
) -> list[int]:
    """The first ``keep`` indices by rank, the rank that does not fit whole cut to the subset
    that adds the most hypervolume to the better ranks (SMS-EMOA's selection; see
    :func:`_best_subset`)."""
    order, ranks = _order_indices(points, directions)
    chosen: list[int] = []
    for rank in sorted(set(ranks)):
        layer = [i for i in order if ranks[i] == rank]
        room = keep - len(chosen)
        if len(layer) <= room:
            chosen += layer
            continue
        if room > 0:
            chosen += _best_subset(points, directions, reference, chosen, layer, room)
        break
    return chosen


def _best_subset(
    points: Sequence[Sequence[float]],
    directions: Sequence[Direction],
    reference: Sequence[float],
    better: Sequence[int],
    layer: Sequence[int],
    room: int,
) -> list[int]:
    """The ``room`` members of ``layer`` (in crowding order) whose points add the most
    hypervolume to ``better``'s: exhaustively while there are at most
    :data:`_EXACT_CUT_SUBSETS` subsets, else greedily (each pick adds the most volume to what is
    kept). Equal volumes go to the earlier members (the more isolated), then by position."""

    def volume(members: Iterable[int]) -> float:
        return hypervolume([points[i] for i in (*better, *members)], reference, directions)

    if math.comb(len(layer), room) <= _EXACT_CUT_SUBSETS:
        # max() keeps the first of equal volumes, and combinations come in crowding order.
        return list(max(itertools.combinations(layer, room), key=volume))
    picked: list[int] = []
    left = list(layer)
    for _ in range(room):
        best = max(left, key=lambda i: volume([*picked, i]))
        picked.append(best)
        left.remove(best)
    return picked


def promote(
    scores: Mapping[K, Sequence[float]],
    directions: Sequence[Direction],
    *,
    eta: float,
    count: int | None = None,
    reference: Sequence[float] | None = None,
) -> list[K]:
    """The candidates promoted out of a rung, best first (see the module docstring).

    Args:
        scores: Each candidate's objective means at this rung, in the caller's order.
        directions: The objectives' directions.
        eta: Keep ``1/eta`` of the candidates (:func:`promotion_count`).
        count: Keep exactly this many instead.
        reference: The hypervolume reference point: when given, the non-dominated rank that
            does not fit whole into the kept candidates is cut to the subset adding the most
            hypervolume rather than by crowding distance.
    """
    keys = list(scores)
    keep = promotion_count(len(keys), eta) if count is None else count
    if keep < 0:
        raise ValueError(f"count must be >= 0, got {keep}")
    points = [list(scores[k]) for k in keys]
    if any(len(p) != len(directions) for p in points):
        raise ValueError("every candidate needs one value per objective")
    if reference is None or keep >= len(keys):
        return _order(keys, points, directions)[:keep]
    if len(reference) != len(directions):
        raise ValueError("the reference point needs one value per objective")
    return [keys[i] for i in _hypervolume_cut(points, directions, reference, keep)]


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
    """``spec`` with the probe of ``rung`` (its steps and seeds; the full probe's forecast
    horizon, so every rung forecasts the same update)."""
    probe = spec.probe.model_copy(
        update={
            "steps": rung.steps,
            "repeats": rung.repeats,
            "forecast_horizon": spec.probe.resolved_forecast_horizon,
        }
    )
    return spec.model_copy(update={"probe": probe})


def planned_runs(rungs: Sequence[Rung], candidates: int) -> int:
    """Probe runs (trials) a successive-halving sweep of ``candidates`` plans: the trial
    budget when every probe completes (a rung whose probes failed promotes fewer)."""
    total = 0
    active = candidates
    for rung in rungs:
        total += active
        active = promotion_count(active, rung.eta)
    return total


@dataclass(frozen=True)
class Probe:
    """A finished probe run (trial) as the ladder sees it."""

    number: int
    #: The number of the candidate's rung-0 trial.
    candidate: int
    rung: int
    #: Objective means, None unless the probe completed with finite values.
    values: tuple[float, ...] | None
    feasible: bool = True


@dataclass(frozen=True)
class RungPlan:
    """The rung a sweep is at: what it still has to probe there."""

    rung: Rung
    #: Probe runs this rung holds in all.
    planned: int
    #: Probe runs of this rung finished so far.
    finished: int
    #: Candidates promoted into this rung (best first; empty at rung 0, which samples).
    promoted: list[int]
    #: Promoted candidates without a finished probe at this rung yet.
    missing: list[int]


def next_rung(
    probes: Sequence[Probe],
    rungs: Sequence[Rung],
    directions: Sequence[Direction],
    *,
    candidates: int,
    reference: Sequence[float] | None = None,
) -> RungPlan | None:
    """The first rung with probes left, from the finished probes alone (None: all done).

    Rung 0 holds ``candidates`` probes. A finished rung promotes
    :func:`promotion_count` of its probes from its complete ones, the feasible first (each
    group by :func:`promote`, with ``reference`` for its hypervolume cut); nothing promoted
    ends the ladder early.
    """
    promoted: list[int] = []
    for rung in rungs:
        here = [p for p in probes if p.rung == rung.index]
        planned = candidates if rung.index == 0 else len(promoted)
        done = {p.candidate for p in here}
        missing = [c for c in promoted if c not in done]
        if len(here) < planned:
            return RungPlan(rung, planned, len(here), promoted, missing)
        if rung.index == len(rungs) - 1:
            return None
        keep = promotion_count(planned, rung.eta)
        scored = sorted(
            ((p, p.values) for p in here if p.values is not None), key=lambda s: s[0].candidate
        )
        promoted = []
        for feasible in (True, False):
            group = {p.candidate: values for p, values in scored if p.feasible is feasible}
            room = keep - len(promoted)
            if group and room > 0:
                promoted += promote(
                    group,
                    directions,
                    eta=rung.eta,
                    count=min(room, len(group)),
                    reference=reference,
                )
        if not promoted:
            return None
    return None
