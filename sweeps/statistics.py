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
agree exactly without one have a zero-width interval. A bounded objective (stability and
benchmarks lie in [0, 1]) has its interval clipped to its bounds: the t-interval is symmetric,
the score cannot leave its range.

The hypervolume's interval is a *parametric* bootstrap on the seeds' uncertainty: every draw
moves each candidate's mean objective vector by ``sem x T_df`` per objective (a Student-t draw
with the interval's degrees of freedom; normal for lm-eval's error alone), clipped to the
objective's bounds, and recomputes the front's hypervolume. With two seeds the t with one
degree of freedom makes the draws as wide as the per-candidate intervals are; resampling two
seeds with replacement could only ever reach the two values seen.

Two candidates are *tied* unless the one dominates the other on the means and their intervals
are apart in at least one objective. The *tied set* of a front is every candidate off the front
that no other candidate dominates clearly: what the measurement cannot tell from the front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeps.pareto import Direction, dominates, hypervolume

__all__ = [
    "DEFAULT_CONFIDENCE",
    "Bounds",
    "Interval",
    "bootstrap_hypervolume",
    "clearly_dominates",
    "mean_interval",
    "tied_set",
]

DEFAULT_CONFIDENCE = 0.95
"""Coverage of every interval the sweep reports."""

Bounds = tuple[float | None, float | None]
"""An objective's ``(lowest, highest)`` possible value, None where it is unbounded."""


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval (``low``/``high`` None when it cannot be known).

    ``dof`` is the degrees of freedom of the t-distribution behind the interval (``inf`` for a
    normal one, None when unknown, e.g. a record written before it was kept).
    """

    mean: float
    low: float | None
    high: float | None
    sem: float | None
    n: int
    confidence: float = DEFAULT_CONFIDENCE
    dof: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The interval as plain JSON data."""
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "sem": self.sem,
            "n": self.n,
            "confidence": self.confidence,
            # Strict JSON (PostgreSQL's) has no infinity: a normal interval's dof is "inf".
            "dof": self.dof if self.dof is None or math.isfinite(self.dof) else "inf",
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
            dof=None if data.get("dof") is None else float(data["dof"]),
        )

    def bounds(self) -> tuple[float, float]:
        """``(low, high)``, the mean itself on both sides when the interval is unknown."""
        low = self.mean if self.low is None else self.low
        high = self.mean if self.high is None else self.high
        return low, high

    def draw_scale(self) -> tuple[float, float] | None:
        """``(sem, dof)`` to draw the mean from, None when it has no known error.

        An interval without a recorded ``dof`` counts ``n - 1`` (seeds only) when it has
        several seeds, else normal (lm-eval's error on one seed).
        """
        if self.sem is None or self.sem <= 0:
            return None
        if self.dof is not None:
            return self.sem, self.dof
        return self.sem, float(self.n - 1) if self.n >= 2 else math.inf


def _clip(value: float, bounds: Bounds | None) -> float:
    if bounds is None:
        return value
    lowest, highest = bounds
    if lowest is not None:
        value = max(lowest, value)
    if highest is not None:
        value = min(highest, value)
    return value


def mean_interval(
    values: Sequence[float],
    *,
    measurement_se: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    bounds: Bounds | None = None,
) -> Interval:
    """The mean of ``values`` (one per seed) with its confidence interval (see module doc).

    Args:
        values: One finite value per seed (at least one).
        measurement_se: A standard error every value shares (lm-eval's, for a benchmark).
        confidence: Coverage of the interval, in (0, 1).
        bounds: The objective's range; the interval is clipped to it.
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
        freedom = float(n - 1)
    elif shared > 0:
        sem = shared
        quantile = float(stats.norm.ppf((1 + confidence) / 2))
        freedom = math.inf
    else:
        return Interval(mean, None, None, None, n, confidence)
    half = quantile * sem
    low, high = _clip(mean - half, bounds), _clip(mean + half, bounds)
    return Interval(mean, low, high, sem, n, confidence, freedom)


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
    intervals: Sequence[Sequence[Interval]],
    reference: Sequence[float],
    directions: Sequence[Direction],
    *,
    bounds: Sequence[Bounds | None] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Hypervolume of the candidates' means with a parametric-bootstrap interval.

    Each draw moves every candidate's mean by ``sem x T_dof`` per objective (independent
    Student-t draws, normal for an infinite ``dof``), clips it to the objective's bounds and
    takes the hypervolume of all the drawn points; the interval is the ``(1 - c)/2`` and
    ``(1 + c)/2`` percentiles of the draws, ``sem`` their standard deviation. A mean without a
    known error (one seed, no lm-eval error) is the same point in every draw.

    Args:
        intervals: Per candidate, one interval per objective.
        reference: Hypervolume reference point.
        directions: The objectives' directions.
        bounds: Per objective, its range (None: unbounded).
        resamples: Draws.
        seed: Seed of the draws (the interval is reproducible).
        confidence: Coverage of the interval.
    """
    import numpy as np

    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    candidates = [list(row) for row in intervals if row]
    limits = list(bounds) if bounds is not None else [None] * len(directions)
    estimate = hypervolume([[i.mean for i in row] for row in candidates], reference, directions)
    rng = np.random.default_rng(seed)
    # draws[r][c][k]: draw r of candidate c's objective k.
    draws = np.array([[[i.mean for i in row] for row in candidates]] * resamples, dtype=float)
    for c, row in enumerate(candidates):
        for k, interval in enumerate(row):
            scale = interval.draw_scale()
            if scale is None:
                continue
            sem, dof = scale
            noise = (
                rng.standard_normal(resamples)
                if math.isinf(dof)
                else rng.standard_t(dof, resamples)
            )
            draws[:, c, k] += sem * noise
            lowest, highest = limits[k] or (None, None)
            if lowest is not None or highest is not None:
                draws[:, c, k] = np.clip(draws[:, c, k], lowest, highest)
    volumes = sorted(hypervolume(points.tolist(), reference, directions) for points in draws)
    tail = (1 - confidence) / 2
    average = sum(volumes) / resamples
    spread = math.sqrt(sum((v - average) ** 2 for v in volumes) / resamples)
    return Interval(
        estimate,
        _percentile(volumes, tail),
        _percentile(volumes, 1 - tail),
        spread,
        len(candidates),
        confidence,
    )
