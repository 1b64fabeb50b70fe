"""Feasibility of a trial: constraints the optimiser honours and the front respects.

Each constraint is a number that is ``<= 0`` when it holds (Optuna's ``constraints_func``
convention; a larger positive number is a worse violation, which TPE and NSGA-II use to rank
infeasible trials among themselves):

- ``not_collapsed`` — ``max over seeds (collapse_threshold - length_retention)``, and 1 when a
  seed diverged: every seed kept its length;
- ``kl_budget`` — mean final KL minus ``constraints.kl_budget``: the policy stayed close to the
  reference (the paper treats this as a budget, not an objective);
- ``benchmark_floor`` — ``constraints.benchmark_floor`` minus the mean ``benchmark`` of the
  initial actor.

The values are computed by :func:`constraint_values` in the trial, stored with its stability
record (``stability["constraints"]``) and set on the Optuna trial before it is told
(:func:`set_trial_constraints`). Optuna 5 deprecated the samplers' ``constraints_func`` for
``Trial.set_constraint``: TPE, NSGA-II and GP read ``trial.constraints`` and rank an infeasible
trial below every feasible one, and ``study.best_trials`` is the feasible front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from sweeps.spec import ConstraintsSpec

__all__ = [
    "constraint_values",
    "constraints_from_result",
    "is_feasible",
    "set_trial_constraints",
]

_RESULT_PREFIX = "stability/constraints/"


def constraint_values(
    spec: ConstraintsSpec,
    *,
    collapse_threshold: float,
    seeds: Sequence[Mapping[str, Any]],
    kl_final: float,
    benchmark: float,
) -> dict[str, float]:
    """The active constraints of a trial, by name (``<= 0``: holds).

    Args:
        spec: The sweep's constraints.
        collapse_threshold: The probe's collapse threshold.
        seeds: Each seed's stability metrics (``length_retention``, ``diverged``).
        kl_final: The mean final KL over the seeds.
        benchmark: The mean benchmark of the initial actor.
    """
    values: dict[str, float] = {}
    if spec.not_collapsed:
        values["not_collapsed"] = max(
            1.0 if seed.get("diverged") else collapse_threshold - float(seed["length_retention"])
            for seed in seeds
        )
    if spec.kl_budget is not None:
        values["kl_budget"] = kl_final - spec.kl_budget
    if spec.benchmark_floor is not None:
        values["benchmark_floor"] = spec.benchmark_floor - benchmark
    return values


def is_feasible(stability: Mapping[str, Any] | None) -> bool:
    """Whether a stored trial met every constraint (a trial recorded without any did)."""
    constraints = (stability or {}).get("constraints") or {}
    return all(float(value) <= 0 for value in constraints.values())


def set_trial_constraints(trial: optuna.Trial, constraints: Mapping[str, float]) -> None:
    """Set each constraint on the Optuna trial (before it is told)."""
    for name, value in constraints.items():
        trial.set_constraint(name, float(value))


def constraints_from_result(result: Mapping[str, Any]) -> dict[str, float]:
    """A finished trial's constraints from its Ray Tune result (flattened or nested)."""
    nested = (result.get("stability") or {}).get("constraints")
    if isinstance(nested, Mapping):
        return {name: float(value) for name, value in nested.items()}
    return {
        key.removeprefix(_RESULT_PREFIX): float(value)
        for key, value in result.items()
        if key.startswith(_RESULT_PREFIX)
    }
