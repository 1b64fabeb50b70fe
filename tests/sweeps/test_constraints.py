"""Constraints: hand-computed values, the sampler steering away from infeasible trials, and the
feasible front of the report."""

from __future__ import annotations

import optuna
import pytest

from sweeps.constraints import (
    constraint_values,
    constraints_from_result,
    is_feasible,
    set_trial_constraints,
)
from sweeps.reports import ObjectiveInfo, SweepReportData, TrialRecord, build_report
from sweeps.spec import ConstraintsSpec


def test_constraint_values_by_hand() -> None:
    seeds = [{"length_retention": 0.8}, {"length_retention": 0.4}]
    spec = ConstraintsSpec(not_collapsed=True, kl_budget=2.0, benchmark_floor=0.3)
    values = constraint_values(
        spec, collapse_threshold=0.5, seeds=seeds, kl_final=2.5, benchmark=0.4
    )
    # The worst seed decides: 0.5 - 0.4; KL 0.5 over budget; benchmark 0.1 above the floor.
    assert values == pytest.approx(
        {"not_collapsed": 0.1, "kl_budget": 0.5, "benchmark_floor": -0.1}
    )
    diverged = [{"length_retention": 0.9}, {"length_retention": 0.9, "diverged": True}]
    on = ConstraintsSpec(not_collapsed=True)
    assert constraint_values(
        on, collapse_threshold=0.5, seeds=diverged, kl_final=0.0, benchmark=0.0
    ) == {"not_collapsed": 1.0}
    off = ConstraintsSpec()
    assert not off.active() and on.active()
    assert (
        constraint_values(off, collapse_threshold=0.5, seeds=seeds, kl_final=9, benchmark=0) == {}
    )


def test_constraints_from_a_tune_result() -> None:
    assert constraints_from_result({"stability/constraints/kl_budget": -1, "stability/x": 2}) == {
        "kl_budget": -1.0
    }
    assert constraints_from_result({"stability": {"constraints": {"not_collapsed": 0.2}}}) == {
        "not_collapsed": 0.2
    }
    assert constraints_from_result({}) == {}


def test_is_feasible() -> None:
    assert is_feasible(None) and is_feasible({"stability": 0.5})
    assert is_feasible({"constraints": {"not_collapsed": 0.0, "kl_budget": -1.0}})
    assert not is_feasible({"constraints": {"not_collapsed": -0.2, "kl_budget": 0.01}})


def _constrained_run(constrained: bool) -> tuple[int, optuna.Study]:
    """Maximise (x, y) on the unit square subject to x + y <= 1: 40 TPE trials, seed 0."""
    study = optuna.create_study(
        directions=["maximize", "maximize"], sampler=optuna.samplers.TPESampler(seed=0)
    )
    late_infeasible = 0
    for number in range(40):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        if constrained:
            set_trial_constraints(trial, {"sum": x + y - 1})
        study.tell(trial, [x, y])
        late_infeasible += number >= 20 and x + y > 1
    return late_infeasible, study


def test_the_sampler_honours_the_constraints() -> None:
    constrained, study = _constrained_run(True)
    unconstrained, _ = _constrained_run(False)
    # Without the constraint TPE heads for the infeasible corner (1, 1) (20 of the last 20
    # trials); with it, it searches along the boundary x + y = 1 (8 of 20 just over it).
    assert 2 * constrained <= unconstrained
    front = study.best_trials
    assert front and all(t.params["x"] + t.params["y"] <= 1 for t in front)


def test_the_report_front_is_the_feasible_front() -> None:
    objectives = [
        ObjectiveInfo("stability", "maximize", 0.0),
        ObjectiveInfo("benchmark", "maximize", 0.0),
    ]
    broke = {"constraints": {"not_collapsed": 0.3, "kl_budget": -1.0}}
    kept = {"constraints": {"not_collapsed": -0.2, "kl_budget": -1.0}}
    trials = [
        TrialRecord(
            0, (1.0, 0.0), 0.0, "complete", None, {"stability": 0.9, "benchmark": 0.9}, broke
        ),
        TrialRecord(
            1, (0.5, 0.5), 0.5, "complete", None, {"stability": 0.6, "benchmark": 0.5}, kept
        ),
        TrialRecord(
            2, (0.5, 0.5), 0.2, "complete", None, {"stability": 0.5, "benchmark": 0.6}, kept
        ),
    ]
    data = SweepReportData("c", "constrained", "succeeded", objectives, trials, 3)
    assert [t.number for t in data.front()] == [1, 2]
    assert [t.number for t in data.infeasible()] == [0]
    assert data.hypervolume() == pytest.approx(0.6 * 0.5 + 0.5 * 0.1)
    chosen = data.recommendation()
    assert chosen is not None and chosen.trial.number == 2
    report = build_report(data)
    assert report.to_json()["infeasible"] == [{"number": 0, "violations": {"not_collapsed": 0.3}}]
    markdown = report.to_markdown()
    assert "## Infeasible trials (kept off the front)" in markdown
    assert "#0 w=(1.00, 0.00) a=0.00: breaks not_collapsed by 0.3" in markdown
