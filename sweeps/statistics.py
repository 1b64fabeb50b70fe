"""Statistics of repeated probes: confidence intervals, the tied set, a bootstrap hypervolume.

A trial probes its candidate on ``probe.repeats`` seeds. Each objective is the mean over the
seeds, with a Student-t confidence interval from their spread; a benchmark also carries the
standard error lm-eval reports for its documents, which does not shrink with more seeds
(every seed is scored on the same documents), so it is added in quadrature::

    sem^2 = s^2 / n + se^2                    half-width = t_{(1+c)/2, df} x sem
    df = sem^4 / ((s^2 / n)^2 / (n - 1))      (Welch-Satterthwaite; lm-eval's se counts as
                                               normal, so df = n - 1 without it and the
                                               interval is z x se when the seeds agree)

One seed without a measurement error has no interval (``low``/``high`` are None); seeds that
agree exactly without one have a zero-width interval.

Two candidates are *tied* unless the one dominates the other on the means and their intervals
are apart in at least one objective. The *tied set* of a front is every candidate off the front
that no other candidate dominates clearly: what the measurement cannot tell from the front.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeps.pareto import Direction, dominates, hypervolume

__all__ = [
    "DEFAULT_CONFIDENCE",
    "Interval",
    "bootstrap_hypervolume",
    "clearly_dominates",
    "mean_interval",
    "tied_set",
]

DEFAULT_CONFIDENCE = 0.95
"""Coverage of every interval the sweep reports."""


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval (``low``/``high`` None when it cannot be known)."""

    mean: float
    low: float | None
    high: float | None
    sem: float | None
    n: int
    confidence: float = DEFAULT_CONFIDENCE

    def to_json(self) -> dict[str, Any]:
        """The interval as plain JSON data."""
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "sem": self.sem,
            "n": self.n,
            "confidence": self.confidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interval:
        """The inverse of :meth:`to_json`."""
        return cls(
            mean=float(data["mean"]),
            low=None if data.get("low") is None else float(data["low"]),
            high=None if data.get("high") is None else float(data["high"]),
            sem=None if data.get("sem") is None else float(data["sem"]),
            n=int(data["n"]),
            confidence=float(data.get("confidence", DEFAULT_CONFIDENCE)),
        )

    def bounds(self) -> tuple[float, float]:
        """``(low, high)``, the mean itself on both sides when the interval is unknown."""
        low = self.mean if self.low is None else self.low
        high = self.mean if self.high is None else self.high
        return low, high


def mean_interval(
    values: Sequence[float],
    *,
    measurement_se: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """The mean of ``values`` (one per seed) with its confidence interval (see module doc).

    Args:
        values: One finite value per seed (at least one).
        measurement_se: A standard error every value shares (lm-eval's, for a benchmark).
        confidence: Coverage of the interval, in (0, 1).
    """
    from scipy import stats

    if not values:
        raise ValueError("no values to average")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must be finite, got {list(values)}")
    n = len(values)
    mean = sum(values) / n
    shared = measurement_se if measurement_se is not None and measurement_se > 0 else 0.0
    seed_part = sum((v - mean) ** 2 for v in values) / (n - 1) / n if n >= 2 else 0.0
    if seed_part > 0:
        sem = math.sqrt(seed_part + shared**2)
        # Welch-Satterthwaite: the lm-eval part is a large-sample normal error.
        freedom = sem**4 / (seed_part**2 / (n - 1))
        quantile = float(stats.t.ppf((1 + confidence) / 2, freedom))
    elif n >= 2 and shared == 0:
        sem = 0.0
        quantile = 0.0
    elif shared > 0:
        sem = shared
        quantile = float(stats.norm.ppf((1 + confidence) / 2))
    else:
        return Interval(mean, None, None, None, n, confidence)
    half = quantile * sem
    return Interval(mean, mean - half, mean + half, sem, n, confidence)


def _apart(better: Interval, worse: Interval, direction: Direction) -> bool:
    """True when ``better``'s interval lies wholly on the better side of ``worse``'s."""
    better_low, better_high = better.bounds()
    worse_low, worse_high = worse.bounds()
    if direction == "maximize":
        return better_low > worse_high
    return better_high < worse_low


def clearly_dominates(
    a: Sequence[Interval], b: Sequence[Interval], directions: Sequence[Direction]
) -> bool:
    """``a`` dominates ``b`` on the means and is apart from it in at least one objective."""
    means_a, means_b = [i.mean for i in a], [i.mean for i in b]
    if not dominates(means_a, means_b, directions):
        return False
    return any(_apart(x, y, d) for x, y, d in zip(a, b, directions, strict=True))


def tied_set(
    intervals: Sequence[Sequence[Interval]],
    front: Sequence[int],
    directions: Sequence[Direction],
) -> list[int]:
    """Indices off ``front`` that no candidate clearly dominates, in index order.

    Args:
        intervals: Per candidate, one interval per objective.
        front: Indices of the front on the means.
        directions: The objectives' directions.
    """
    members = set(front)
    tied = []
    for index, candidate in enumerate(intervals):
        if index in members:
            continue
        if not any(
            clearly_dominates(other, candidate, directions)
            for j, other in enumerate(intervals)
            if j != index
        ):
            tied.append(index)
    return tied


def _percentile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def bootstrap_hypervolume(
    seed_values: Sequence[Sequence[Sequence[float]]],
    reference: Sequence[float],
    directions: Sequence[Direction],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Hypervolume of the candidates' means with a percentile-bootstrap interval.

    Each resample draws, per candidate, its seeds with replacement and takes their mean
    objective vector; the interval is the ``(1 - c)/2`` and ``(1 + c)/2`` percentiles of the
    resampled hypervolumes. A candidate with one seed is the same point in every resample.

    Args:
        seed_values: Per candidate, per seed, the objective vector.
        reference: Hypervolume reference point.
        directions: The objectives' directions.
        resamples: Bootstrap resamples.
        seed: Seed of the resampling (the interval is reproducible).
        confidence: Coverage of the interval.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")

    def mean_point(rows: Sequence[Sequence[float]]) -> list[float]:
        return [sum(column) / len(rows) for column in zip(*rows, strict=True)]

    candidates = [rows for rows in seed_values if rows]
    estimate = hypervolume([mean_point(rows) for rows in candidates], reference, directions)
    rng = random.Random(seed)
    volumes = []
    for _ in range(resamples):
        points = [mean_point([rows[rng.randrange(len(rows))] for _ in rows]) for rows in candidates]
        volumes.append(hypervolume(points, reference, directions))
    volumes.sort()
    tail = (1 - confidence) / 2
    spread = math.sqrt(sum((v - sum(volumes) / resamples) ** 2 for v in volumes) / resamples)
    return Interval(
        estimate,
        _percentile(volumes, tail),
        _percentile(volumes, 1 - tail),
        spread,
        len(candidates),
        confidence,
    )
