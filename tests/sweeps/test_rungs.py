"""The runner's rung bookkeeping on a real Optuna study (SQLite), with a fake trial function.

The probes here are a fake (named so): a synthetic objective of the ratios stands in for
Ray Tune running the trainable; the ladder, the enqueued promotions, the requeue of a trial a
kill interrupted and the resume all go through the runner's own code
(:func:`sweeps._study.open_study`, :func:`sweeps._study.next_stage`,
:class:`sweeps._tune_driver.SpaceFunction`). The real sweep with promotion is in
``tests/sweeps/test_runner_fidelity.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeps._study import INTERRUPTED_ATTR, SweepStudy, ladder_plan, next_stage, open_study
from sweeps._tune_driver import SpaceFunction
from sweeps.fidelity import promote
from sweeps.spec import SweepSpec

MODELS = {"base": "/m/base", "sft": ["/m/a", "/m/b"], "reward": "/m/rm", "prompts": "/m/p"}


def _spec() -> SweepSpec:
    return SweepSpec.parse(
        {
            "name": "rungs",
            "models": MODELS,
            "search": {"n_trials": 9, "sampler": "random", "seed": 3, "seed_points": ["baselines"]},
            "objectives": [
                {"name": "stability", "direction": "maximize"},
                {"name": "benchmark", "direction": "maximize"},
            ],
            "probe": {"steps": 9, "repeats": 2},
            "fidelity": {"enabled": True, "rungs": 3, "eta": 3, "min_steps": 1},
        }
    )


def fake_trial_function(config: dict[str, Any], alpha: float) -> list[float]:
    """FAKE probe: a synthetic trade-off of alpha and the first weight, plus a rung bonus."""
    w = config["weights"][0]
    bonus = 0.01 * config["rung"]
    return [alpha * (1 - 0.5 * w) + bonus, (1 - alpha) * (0.5 + 0.5 * w) + bonus]


def _probe_stage(sweep_study: SweepStudy, count: int, *, killed_at: int | None = None) -> None:
    """Run ``count`` fake probes as the Tuner would (ask, space function, tell); a kill at
    ``killed_at`` leaves that trial RUNNING and the rest unasked."""
    study = sweep_study.study
    space = SpaceFunction(sweep_study.space, sweep_study.spec.rungs())
    for index in range(count):
        trial = study.ask()
        config = space(trial)
        if index == killed_at:
            return
        study.tell(trial, fake_trial_function(config, trial.params["alpha"]))


def _open(url: str) -> SweepStudy:
    return open_study(url, "rungs-study", _spec())


def test_ladder_promotes_by_rank_and_resumes_mid_rung(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    spec = _spec()
    assert [(r.steps, r.repeats) for r in spec.rungs()] == [(1, 1), (3, 2), (9, 2)]
    assert spec.trial_budget() == 9 + 3 + 1
    sweep_study = _open(url)
    plan = next_stage(sweep_study)
    assert plan is not None and (plan.rung.index, plan.planned) == (0, 9)
    _probe_stage(sweep_study, 9)
    # Rung 1: the 3 candidates promote() keeps from rung 0's values, enqueued with their ratios;
    # asking again (a kill between the enqueue and the Tuner) enqueues nothing twice.
    rung0 = {t.number: t for t in sweep_study.study.trials if t.user_attrs["rung"] == 0}
    expected = promote(
        {n: t.values for n, t in sorted(rung0.items())},
        spec.directions,
        eta=3,
        reference=spec.reference_point,
    )
    plan = next_stage(sweep_study)
    assert plan is not None and plan.rung.index == 1 and plan.promoted == expected
    assert next_stage(sweep_study) == plan
    waiting = sweep_study.study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["candidate"] for t in waiting) == sorted(expected)
    # Killed mid-rung 1: one probe told, the next one RUNNING when the process died.
    _probe_stage(sweep_study, 3, killed_at=1)
    resumed = _open(url)  # the resume fails the orphan and enqueues its ratios again
    assert len(resumed.orphans) == 1
    plan = next_stage(resumed)
    assert plan is not None and (plan.rung.index, plan.finished, plan.planned) == (1, 1, 3)
    assert len(resumed.study.get_trials(states=(TrialState.WAITING,))) == 2
    _probe_stage(resumed, plan.planned - plan.finished)
    plan = next_stage(resumed)
    assert plan is not None and plan.rung.index == 2 and len(plan.promoted) == 1
    _probe_stage(resumed, 1)
    assert next_stage(resumed) is None and ladder_plan(resumed) is None
    counted = [t for t in resumed.study.trials if not t.user_attrs.get(INTERRUPTED_ATTR)]
    assert all(t.state is TrialState.COMPLETE for t in counted)
    by_rung: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in counted:
        by_rung.setdefault(trial.user_attrs["rung"], []).append(trial)
    assert [len(by_rung[r]) for r in (0, 1, 2)] == [9, 3, 1]
    # Each promoted candidate ran once per rung, with its rung-0 ratios, steps and seeds.
    assert sorted(t.user_attrs["candidate"] for t in by_rung[1]) == sorted(expected)
    for trial in [*by_rung[1], *by_rung[2]]:
        assert trial.params == rung0[trial.user_attrs["candidate"]].params
    assert {(t.user_attrs["probe_steps"], t.user_attrs["probe_repeats"]) for t in by_rung[1]} == {
        (3, 2)
    }
    # The interrupted probe's retry kept its rung and candidate.
    (lost,) = [t for t in resumed.study.trials if t.user_attrs.get(INTERRUPTED_ATTR)]
    (retry,) = [t for t in counted if t.user_attrs.get("retry_of") == lost.number]
    assert (retry.user_attrs["rung"], retry.user_attrs["candidate"]) == (
        1,
        lost.user_attrs["candidate"],
    )
