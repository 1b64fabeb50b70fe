"""Forecast a probe's reward: a saturating curve fitted to its per-step reward (ScaleRL-style).

ScaleRL (arXiv 2510.13786) fits RL progress on a bounded metric against compute with::

    R(C) = A - (A - R0) / (1 + (C / C_mid)^B)

``A`` is the asymptote (the reward the run tends to), ``B`` the efficiency (how sharply it gets
there), ``C_mid`` the compute at half the gain, ``R0`` the start. Here compute ``C`` is updates
done (step 1's rollout comes from the untrained actor, so ``C = step - 1``) and ``R0`` is fixed
at step 1's mean reward, as ScaleRL fixes it at the initial performance; ``A``, ``B`` and
``C_mid`` are fitted by bounded least squares (``scipy.optimize.curve_fit``) from a few starts.

The fit is refused — ``None`` with a reason, never a made-up value — when the probe has fewer
than :data:`MIN_STEPS` finite steps, when the curve explains less than :data:`MIN_R2` of the
reward's variance (flat or noisy), when it has not bent yet (``C_mid`` beyond
:data:`MAX_MIDPOINT_RATIO` times the updates seen: the asymptote would be a guess), or when the
least squares do not converge or leave the asymptote unidentified.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "MAX_MIDPOINT_RATIO",
    "MIN_R2",
    "MIN_STEPS",
    "RewardForecast",
    "fit_reward_curve",
    "saturating_curve",
]

MIN_STEPS = 6
"""Fewest finite steps a fit is tried on (three parameters need room to be told apart)."""
MIN_R2 = 0.5
"""Least share of the reward's variance the curve must explain."""
MAX_MIDPOINT_RATIO = 2.0
"""Largest fitted ``C_mid`` accepted, in multiples of the updates seen."""


@dataclass(frozen=True)
class RewardForecast:
    """A fitted reward curve, or the reason there is none (``asymptote`` etc. None)."""

    asymptote: float | None
    efficiency: float | None
    midpoint: float | None
    start: float | None
    asymptote_se: float | None
    r2: float | None
    steps: int
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The forecast as plain JSON data."""
        return asdict(self)


def saturating_curve(
    compute: Any, asymptote: float, efficiency: float, midpoint: float, start: float
) -> Any:
    """``A - (A - R0) / (1 + (C / C_mid)^B)`` (numpy arrays or floats)."""
    return asymptote - (asymptote - start) / (1 + (compute / midpoint) ** efficiency)


def _refused(reason: str, steps: int, start: float | None = None) -> RewardForecast:
    return RewardForecast(None, None, None, start, None, None, steps, reason)


def fit_reward_curve(steps: Sequence[int], rewards: Sequence[float]) -> RewardForecast:
    """Fit :func:`saturating_curve` to a probe's mean reward per step (see module doc).

    Args:
        steps: 1-based update numbers.
        rewards: The mean reward of each step.
    """
    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    if len(steps) != len(rewards):
        raise ValueError(f"{len(steps)} steps but {len(rewards)} rewards")
    pairs = [(s, r) for s, r in zip(steps, rewards, strict=True) if math.isfinite(r)]
    if len(pairs) < MIN_STEPS:
        return _refused(f"too few finite steps to fit ({len(pairs)} < {MIN_STEPS})", len(pairs))
    pairs.sort()
    compute = np.array([s - 1 for s, _ in pairs], dtype=float)
    reward = np.array([r for _, r in pairs], dtype=float)
    start = float(reward[0])
    horizon = float(compute[-1])
    total = float(np.sum((reward - reward.mean()) ** 2))
    scale = float(np.max(np.abs(reward - start)))
    if total == 0.0 or scale == 0.0:
        return _refused("flat reward: nothing to fit", len(pairs), start)

    def model(c: Any, asymptote: float, efficiency: float, midpoint: float) -> Any:
        return saturating_curve(c, asymptote, efficiency, midpoint, start)

    lower = [start - 100 * scale, 0.2, 1e-3]
    upper = [start + 100 * scale, 10.0, 1e3 * horizon]
    best: tuple[float, Any, Any] | None = None
    tail = float(reward[-max(1, len(reward) // 4) :].mean())
    for midpoint in (horizon / 4, horizon / 2, horizon):
        for efficiency in (0.5, 1.0, 2.0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                try:
                    params, covariance = curve_fit(
                        model,
                        compute,
                        reward,
                        p0=[tail, efficiency, midpoint],
                        bounds=(lower, upper),
                        maxfev=5000,
                    )
                except (RuntimeError, ValueError):
                    continue
            residual = float(np.sum((reward - model(compute, *params)) ** 2))
            if best is None or residual < best[0]:
                best = (residual, params, covariance)
    if best is None:
        return _refused("the least squares did not converge", len(pairs), start)
    residual, params, covariance = best
    asymptote, efficiency, midpoint = (float(p) for p in params)
    r2 = 1 - residual / total
    if r2 < MIN_R2:
        return _refused(
            f"no trend: the curve explains {r2:.0%} of the reward's variance (< {MIN_R2:.0%})",
            len(pairs),
            start,
        )
    if midpoint > MAX_MIDPOINT_RATIO * horizon:
        return _refused(
            f"not saturating: half the gain at {midpoint:.0f} updates, beyond "
            f"{MAX_MIDPOINT_RATIO:g}x the {horizon:.0f} seen",
            len(pairs),
            start,
        )
    variance = float(covariance[0][0])
    if not math.isfinite(variance) or variance < 0:
        return _refused("the asymptote is not identified by the curve", len(pairs), start)
    return RewardForecast(
        asymptote, efficiency, midpoint, start, math.sqrt(variance), r2, len(pairs)
    )
