"""Forecast a probe's curves: a saturating curve fitted to a per-step metric (ScaleRL-style).

ScaleRL (arXiv 2510.13786) fits RL progress on a bounded metric against compute with::

    R(C) = A - (A - R0) / (1 + (C / C_mid)^B)

``A`` is the asymptote (the value the run tends to), ``B`` the efficiency (how sharply it gets
there), ``C_mid`` the compute at half the gain, ``R0`` the start. Here compute ``C`` is updates
done (step 1's rollout comes from the untrained actor, so ``C = step - 1``) and ``R0`` is fixed
at step 1's value, as ScaleRL fixes it at the initial performance; ``A``, ``B`` and ``C_mid``
are fitted by bounded least squares (``scipy.optimize.curve_fit``) from a few starts. The same
fit serves any per-step metric: the mean reward (:func:`fit_reward_curve`, whose forecast is the
asymptote) and the mean response length (:func:`fit_length_curve`, bounded by
``[0, response_length]``, whose forecast is the curve's value at a horizon of updates, with its
standard error by the delta method on the fit's covariance).

The fit is refused — no forecast, with a reason, never a made-up value — when the probe has
fewer than :data:`MIN_STEPS` finite steps, when the curve explains less than :data:`MIN_R2` of
the metric's variance (flat or noisy), when it has not bent yet (``C_mid`` beyond
:data:`MAX_MIDPOINT_RATIO` times the updates seen: the asymptote would be a guess), or when the
least squares do not converge or leave the asymptote unidentified.

A forecast used as a sweep objective (:data:`FORECAST_OBJECTIVES`) needs a number for every
probe, so a refused fit falls back to the *observed* value — the mean of the metric over the
probe's last window of finite steps, which is what a flat curve predicts — and says so
(``fallback`` true, with the ``reason``): a candidate is never credited a trend its curve did
not show.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from evaluators.stability import DEFAULT_WINDOW

__all__ = [
    "FORECAST_OBJECTIVES",
    "MAX_MIDPOINT_RATIO",
    "MIN_R2",
    "MIN_STEPS",
    "CurveForecast",
    "fit_curve",
    "fit_length_curve",
    "fit_reward_curve",
    "forecasts_of",
    "saturating_curve",
]

MIN_STEPS = 6
"""Fewest finite steps a fit is tried on (three parameters need room to be told apart)."""
MIN_R2 = 0.5
"""Least share of the metric's variance the curve must explain."""
MAX_MIDPOINT_RATIO = 2.0
"""Largest fitted ``C_mid`` accepted, in multiples of the updates seen."""

FORECAST_OBJECTIVES: dict[str, tuple[str, str]] = {
    "reward_asymptote": ("reward_forecast", "asymptote"),
    "length_at_horizon": ("length_forecast", "at_horizon"),
}
"""Each forecast objective: the key of its forecast in a trial's stability record and the
fitted quantity it forecasts."""


@dataclass(frozen=True)
class CurveForecast:
    """A fitted curve and its forecast, or the reason there is none (the fit's fields None).

    ``value`` is what a sweep objective takes: the forecast (``at_horizon`` when a horizon was
    asked for, else the ``asymptote``) or, when the fit was refused, the ``observed`` mean of
    the last window (``fallback`` true).
    """

    asymptote: float | None
    efficiency: float | None
    midpoint: float | None
    start: float | None
    asymptote_se: float | None
    r2: float | None
    steps: int
    reason: str | None = None
    observed: float | None = None
    """Mean of the last window of finite steps (None: no finite step)."""
    horizon: int | None = None
    """The update the forecast is made at (None: the asymptote is the forecast)."""
    at_horizon: float | None = None
    """The curve's value at step ``horizon`` (what a probe of that many updates would log at
    its last update)."""
    at_horizon_se: float | None = None
    value: float | None = None
    fallback: bool = False

    @property
    def fitted(self) -> bool:
        """Whether the curve was fitted (else ``reason`` says why not)."""
        return self.asymptote is not None

    def to_json(self) -> dict[str, Any]:
        """The forecast as plain JSON data."""
        return asdict(self)


def saturating_curve(
    compute: Any, asymptote: float, efficiency: float, midpoint: float, start: float
) -> Any:
    """``A - (A - R0) / (1 + (C / C_mid)^B)`` (numpy arrays or floats)."""
    return asymptote - (asymptote - start) / (1 + (compute / midpoint) ** efficiency)


def _curve_gradient(
    compute: float, asymptote: float, efficiency: float, midpoint: float, start: float
) -> list[float]:
    """The curve's derivatives by ``(A, B, C_mid)`` at ``compute`` (> 0)."""
    ratio = compute / midpoint
    u = ratio**efficiency
    by_u = (asymptote - start) / (1 + u) ** 2
    return [u / (1 + u), by_u * u * math.log(ratio), -by_u * efficiency * u / midpoint]


@dataclass(frozen=True)
class _Fit:
    params: Any
    covariance: Any
    r2: float


def _fit_parameters(
    compute: Any, values: Any, start: float, metric: str, bounds: tuple[float, float] | None
) -> _Fit | str:
    """The least-squares fit of ``(A, B, C_mid)`` from a few starts, or why it is refused."""
    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    seen = float(compute[-1])
    total = float(np.sum((values - values.mean()) ** 2))
    scale = float(np.max(np.abs(values - start)))
    if total == 0.0 or scale == 0.0:
        return f"flat {metric}: nothing to fit"

    def model(c: Any, asymptote: float, efficiency: float, midpoint: float) -> Any:
        return saturating_curve(c, asymptote, efficiency, midpoint, start)

    low, high = start - 100 * scale, start + 100 * scale
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    lower = [low, 0.2, 1e-3]
    upper = [high, 10.0, 1e3 * seen]
    tail = float(values[-max(1, len(values) // 4) :].mean())
    tail = min(max(tail, low), high)
    best: tuple[float, Any, Any] | None = None
    for midpoint in (seen / 4, seen / 2, seen):
        for efficiency in (0.5, 1.0, 2.0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                try:
                    params, covariance = curve_fit(
                        model,
                        compute,
                        values,
                        p0=[tail, efficiency, midpoint],
                        bounds=(lower, upper),
                        maxfev=5000,
                    )
                except (RuntimeError, ValueError):
                    continue
            residual = float(np.sum((values - model(compute, *params)) ** 2))
            if best is None or residual < best[0]:
                best = (residual, params, covariance)
    if best is None:
        return "the least squares did not converge"
    residual, params, covariance = best
    r2 = 1 - residual / total
    if r2 < MIN_R2:
        share = f"{r2:.0%} of the {metric}'s variance"
        return f"no trend: the curve explains {share} (< {MIN_R2:.0%})"
    if float(params[2]) > MAX_MIDPOINT_RATIO * seen:
        return (
            f"not saturating: half the gain at {float(params[2]):.0f} updates, beyond "
            f"{MAX_MIDPOINT_RATIO:g}x the {seen:.0f} seen"
        )
    variance = float(covariance[0][0])
    if not math.isfinite(variance) or variance < 0:
        return "the asymptote is not identified by the curve"
    return _Fit(params, covariance, r2)


def fit_curve(
    steps: Sequence[int],
    values: Sequence[float],
    *,
    metric: str,
    bounds: tuple[float, float] | None = None,
    horizon: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> CurveForecast:
    """Fit :func:`saturating_curve` to a probe's per-step ``values`` (see module doc).

    Args:
        steps: 1-based update numbers.
        values: The metric's value at each step (non-finite values are left out).
        metric: The metric's name, for the reasons (``reward``, ``length``).
        bounds: The metric's range ``(low, high)``; the asymptote is fitted within it.
        horizon: Forecast the curve's value at this step (default: the asymptote is the
            forecast).
        window: Steps of the observed value (the last window's mean) a refused fit falls back to.
    """
    import numpy as np

    if len(steps) != len(values):
        raise ValueError(f"{len(steps)} steps but {len(values)} values")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    pairs = sorted((s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v))
    tail = [v for _, v in pairs[-window:]]
    observed = sum(tail) / len(tail) if tail else None
    start = pairs[0][1] if pairs else None

    def refused(reason: str) -> CurveForecast:
        return CurveForecast(
            None,
            None,
            None,
            start,
            None,
            None,
            len(pairs),
            reason,
            observed=observed,
            horizon=horizon,
            value=observed,
            fallback=True,
        )

    if len(pairs) < MIN_STEPS:
        return refused(f"too few finite steps to fit ({len(pairs)} < {MIN_STEPS})")
    compute = np.array([s - 1 for s, _ in pairs], dtype=float)
    array = np.array([v for _, v in pairs], dtype=float)
    assert start is not None
    fit = _fit_parameters(compute, array, start, metric, bounds)
    if isinstance(fit, str):
        return refused(fit)
    asymptote, efficiency, midpoint = (float(p) for p in fit.params)
    at_horizon = at_horizon_se = None
    if horizon is not None:
        at_horizon = float(saturating_curve(horizon - 1, asymptote, efficiency, midpoint, start))
        at_horizon_se = 0.0  # step 1 is R0 itself
        if horizon > 1:
            # The delta method: the curve's gradient by the parameters through their covariance.
            gradient = np.array(
                _curve_gradient(horizon - 1, asymptote, efficiency, midpoint, start)
            )
            variance = float(gradient @ fit.covariance @ gradient)
            finite = math.isfinite(variance) and variance >= 0
            at_horizon_se = math.sqrt(variance) if finite else None
    return CurveForecast(
        asymptote,
        efficiency,
        midpoint,
        start,
        math.sqrt(float(fit.covariance[0][0])),
        fit.r2,
        len(pairs),
        observed=observed,
        horizon=horizon,
        at_horizon=at_horizon,
        at_horizon_se=at_horizon_se,
        value=asymptote if at_horizon is None else at_horizon,
    )


def fit_reward_curve(
    steps: Sequence[int], rewards: Sequence[float], *, window: int = DEFAULT_WINDOW
) -> CurveForecast:
    """The reward forecast: the asymptote of the probe's mean reward per step (unbounded: a
    reward model's scores have no fixed range)."""
    return fit_curve(steps, rewards, metric="reward", window=window)


def fit_length_curve(
    steps: Sequence[int],
    lengths: Sequence[float],
    *,
    horizon: int,
    max_length: int,
    window: int = DEFAULT_WINDOW,
) -> CurveForecast:
    """The length forecast: the probe's mean response length per step, fitted within
    ``[0, max_length]`` (responses are cut at the probe's ``response_length``), predicted at
    step ``horizon``."""
    return fit_curve(
        steps,
        lengths,
        metric="length",
        bounds=(0.0, float(max_length)),
        horizon=horizon,
        window=window,
    )


def forecasts_of(stability: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per forecast objective a trial recorded, how its value came about: ``seeds_fitted`` of
    ``seeds``, ``fallback`` (some seed took the observed value), the refusals' ``reasons`` and
    the ``horizon`` (the length's; None for the reward) (read from a stored stability record;
    ``report.json`` and ``GET /sweeps/{id}/pareto`` show it)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (key, _) in FORECAST_OBJECTIVES.items():
        record = (stability or {}).get(key)
        if not isinstance(record, Mapping) or "seeds" not in record:
            continue
        seeds, fitted = int(record["seeds"]), int(record.get("seeds_fitted", 0))
        horizon = record.get("horizon")
        out[name] = {
            "seeds_fitted": fitted,
            "seeds": seeds,
            "fallback": fitted < seeds,
            "reasons": list(record.get("reasons") or []),
            "horizon": None if horizon is None else int(horizon),
        }
    return out
