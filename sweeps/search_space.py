"""The BAI search space: alpha in an interval, the SFT weights w on the probability simplex.

Optuna samples plain uniform variables and we map them onto the space:

- ``alpha`` is a float parameter, uniform in the spec's bounds;
- for ``N >= 2`` SFT models with ``weights: simplex``, ``N - 1`` parameters ``u_0 .. u_{N-2}``
  in ``[0, 1]`` are mapped to ``w`` by stick-breaking with the inverse CDF of
  ``Beta(1, N - 1 - i)``: ``v_i = 1 - (1 - u_i) ** (1 / (N - 1 - i))``,
  ``w_i = v_i * (1 - w_0 - ... - w_{i-1})`` and the last weight takes the rest. Uniform ``u``
  gives ``w ~ Dirichlet(1, ..., 1)``, i.e. uniform on the simplex (so a random sampler explores
  the simplex evenly and TPE starts from an even prior);
- for ``N = 1`` or fixed weights there are no ``u`` parameters.

The inverse map (``w -> u``) turns seed points (the paper's ratios, the no-BAI baselines,
explicit points) into Optuna parameters that can be enqueued.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from optuna.distributions import FloatDistribution
from optuna.samplers import (
    BaseSampler,
    GPSampler,
    GridSampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)

ALPHA_PARAM = "alpha"
#: The paper's alpha grid (arXiv 2509.00309, with equal SFT weights).
PAPER_ALPHAS = (0.1, 0.2, 0.5, 0.7, 0.9)

SeedKindName = Literal["paper", "baseline", "explicit"]


def uniform_param(index: int) -> str:
    """The Optuna parameter name of the ``index``-th stick-breaking variable."""
    return f"u_{index}"


def weights_from_uniforms(uniforms: Sequence[float]) -> tuple[float, ...]:
    """Map ``N - 1`` variables in ``[0, 1]`` to ``N`` simplex weights (uniform to uniform)."""
    n = len(uniforms) + 1
    weights: list[float] = []
    remaining = 1.0
    for i, u in enumerate(uniforms):
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"stick-breaking variable u_{i}={u} is outside [0, 1]")
        fraction = 1.0 - (1.0 - u) ** (1.0 / (n - 1 - i))
        weight = fraction * remaining
        weights.append(weight)
        remaining = max(remaining - weight, 0.0)
    weights.append(remaining)
    return tuple(weights)


def uniforms_from_weights(weights: Sequence[float]) -> tuple[float, ...]:
    """The inverse of :func:`weights_from_uniforms` (``u_i = 0`` once the stick is used up)."""
    n = len(weights)
    uniforms: list[float] = []
    remaining = 1.0
    for i, weight in enumerate(weights[:-1]):
        fraction = min(max(weight / remaining, 0.0), 1.0) if remaining > 1e-12 else 0.0
        uniforms.append(1.0 - (1.0 - fraction) ** (n - 1 - i))
        remaining -= weight
    return tuple(uniforms)


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: the SFT weights ``w`` and the base share ``alpha``."""

    weights: tuple[float, ...]
    alpha: float

    def label(self) -> str:
        """A short human label, e.g. ``w=(0.50, 0.50) a=0.20``."""
        weights = ", ".join(f"{w:.2f}" for w in self.weights)
        return f"w=({weights}) a={self.alpha:.2f}"


@dataclass(frozen=True)
class SeedPoint:
    """A candidate enqueued before the optimiser takes over, and why."""

    candidate: Candidate
    kind: SeedKindName


@dataclass(frozen=True)
class SearchSpace:
    """The space of one sweep: ``n_sft`` SFT models, alpha bounds, simplex or fixed weights."""

    n_sft: int
    alpha_bounds: tuple[float, float]
    fixed_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        low, high = self.alpha_bounds
        if self.n_sft < 1:
            raise ValueError("a BAI search space needs at least one SFT model")
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"alpha bounds {self.alpha_bounds} must satisfy 0 <= lo <= hi <= 1")
        if self.fixed_weights is not None and len(self.fixed_weights) != self.n_sft:
            raise ValueError(f"{len(self.fixed_weights)} fixed weights for {self.n_sft} SFT models")

    @property
    def n_uniforms(self) -> int:
        """How many stick-breaking variables Optuna samples (0 for N=1 or fixed weights)."""
        return 0 if self.fixed_weights is not None else self.n_sft - 1

    @property
    def param_names(self) -> list[str]:
        """The Optuna parameter names, ``alpha`` first."""
        return [ALPHA_PARAM] + [uniform_param(i) for i in range(self.n_uniforms)]

    def distributions(self) -> dict[str, FloatDistribution]:
        """The Optuna distributions of :attr:`param_names`."""
        low, high = self.alpha_bounds
        out = {ALPHA_PARAM: FloatDistribution(low, high)}
        for i in range(self.n_uniforms):
            out[uniform_param(i)] = FloatDistribution(0.0, 1.0)
        return out

    def contains(self, candidate: Candidate, *, tol: float = 1e-9) -> bool:
        """True if ``candidate`` lies in this space."""
        low, high = self.alpha_bounds
        if len(candidate.weights) != self.n_sft:
            return False
        if not low - tol <= candidate.alpha <= high + tol:
            return False
        if any(w < -tol for w in candidate.weights) or abs(sum(candidate.weights) - 1) > 1e-6:
            return False
        if self.fixed_weights is not None:
            return all(
                abs(a - b) <= 1e-6
                for a, b in zip(candidate.weights, self.fixed_weights, strict=True)
            )
        return True

    def weights_for(self, params: Mapping[str, Any]) -> tuple[float, ...]:
        """The weights encoded by Optuna ``params``."""
        if self.fixed_weights is not None:
            return self.fixed_weights
        if self.n_sft == 1:
            return (1.0,)
        return weights_from_uniforms(
            [float(params[uniform_param(i)]) for i in range(self.n_uniforms)]
        )

    def candidate(self, params: Mapping[str, Any]) -> Candidate:
        """Decode Optuna ``params`` into a candidate."""
        return Candidate(self.weights_for(params), float(params[ALPHA_PARAM]))

    def params(self, candidate: Candidate) -> dict[str, float]:
        """Encode ``candidate`` as Optuna parameters (for ``study.enqueue_trial``)."""
        if not self.contains(candidate):
            raise ValueError(f"{candidate.label()} lies outside the search space")
        out = {ALPHA_PARAM: float(candidate.alpha)}
        if self.n_uniforms:
            for i, u in enumerate(uniforms_from_weights(candidate.weights)):
                out[uniform_param(i)] = u
        return out

    def suggest(self, trial: Any) -> Candidate:
        """Sample a candidate with an Optuna trial (define-by-run)."""
        low, high = self.alpha_bounds
        params = {ALPHA_PARAM: trial.suggest_float(ALPHA_PARAM, low, high)}
        for i in range(self.n_uniforms):
            params[uniform_param(i)] = trial.suggest_float(uniform_param(i), 0.0, 1.0)
        return self.candidate(params)

    def grid(self, levels: int) -> dict[str, list[float]]:
        """A product grid for Optuna's ``GridSampler``.

        ``alpha`` takes ``levels`` evenly spaced values including both bounds. Each ``u_i`` takes
        the midpoints ``(k + 0.5) / levels``: these cut the simplex into cells of equal volume
        (for N=2 the weights are 0.1, 0.3, ... for 5 levels) without duplicate points.
        """
        if levels < 1:
            raise ValueError("grid levels must be >= 1")
        low, high = self.alpha_bounds
        if levels == 1 or low == high:
            alphas = [(low + high) / 2] if levels == 1 else [low]
        else:
            alphas = [low + (high - low) * k / (levels - 1) for k in range(levels)]
        out = {ALPHA_PARAM: alphas}
        for i in range(self.n_uniforms):
            out[uniform_param(i)] = [(k + 0.5) / levels for k in range(levels)]
        return out

    def grid_size(self, levels: int) -> int:
        """How many points :meth:`grid` has."""
        return math.prod(len(values) for values in self.grid(levels).values())

    def equal_weights(self) -> tuple[float, ...]:
        """The paper's weights: equal, or the fixed weights when the spec fixes them."""
        if self.fixed_weights is not None:
            return self.fixed_weights
        return tuple(1.0 / self.n_sft for _ in range(self.n_sft))

    def paper_points(self) -> list[SeedPoint]:
        """The paper's alpha grid within the bounds, with equal weights."""
        low, high = self.alpha_bounds
        weights = self.equal_weights()
        return [
            SeedPoint(Candidate(weights, alpha), "paper")
            for alpha in PAPER_ALPHAS
            if low <= alpha <= high
        ]

    def baseline_points(self) -> list[SeedPoint]:
        """The no-BAI starting points: alpha = 0 with each SFT model alone."""
        points = []
        for i in range(self.n_sft):
            weights = tuple(1.0 if j == i else 0.0 for j in range(self.n_sft))
            points.append(SeedPoint(Candidate(weights, 0.0), "baseline"))
        return points

    def baseline_problem(self) -> str | None:
        """Why the baselines lie outside this space, or ``None`` if they lie inside."""
        if self.alpha_bounds[0] > 0.0:
            return "baselines need alpha = 0, but the alpha bounds exclude it"
        if self.fixed_weights is not None and self.n_sft > 1:
            return "baselines need one SFT model alone, but the weights are fixed"
        return None


def dedupe_seed_points(points: Sequence[SeedPoint]) -> list[SeedPoint]:
    """Drop repeated candidates (the first kind wins), keeping order."""
    seen: set[tuple[float, ...]] = set()
    out = []
    for point in points:
        key = (*(round(w, 9) for w in point.candidate.weights), round(point.candidate.alpha, 9))
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


SamplerName = Literal["tpe", "nsga2", "gp", "random", "grid"]


class _BudgetedGridSampler(GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` call on an exhausted grid.

    The stock sampler stops the study once every grid point was visited, which only works
    inside ``study.optimize``; with ask/tell (Ray Tune) it raises. The sweep's trial budget
    decides when to stop instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def make_sampler(
    name: SamplerName, space: SearchSpace, *, seed: int | None, grid_levels: int = 5
) -> BaseSampler:
    """The Optuna sampler called ``name`` for ``space``, seeded with ``seed``."""
    if name == "tpe":
        return TPESampler(seed=seed)
    if name == "nsga2":
        return NSGAIISampler(seed=seed)
    if name == "gp":
        return GPSampler(seed=seed)
    if name == "random":
        return RandomSampler(seed=seed)
    if name == "grid":
        return _BudgetedGridSampler(space.grid(grid_levels), seed=seed)
    raise ValueError(f"unknown sampler {name!r}")
