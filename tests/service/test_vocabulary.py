"""One vocabulary for step metrics from the probe to storage to REST."""

from __future__ import annotations

import math

from evaluators import StepMetrics as ProbeStep
from service.schemas import StepMetrics as RestStep
from service.schemas import TrialDetail
from storage import init_database, repository, session_scope
from storage.models import STEP_METRICS, TrialState


def _probe_step(step: int) -> ProbeStep:
    values = {name: 0.25 * step for name in ProbeStep.model_fields if name != "step"}
    return ProbeStep(step=step, **{**values, "kl": math.nan})


def test_stored_metrics_are_named_as_the_probe_names_them() -> None:
    assert set(STEP_METRICS) <= set(ProbeStep.model_fields)
    assert set(RestStep.model_fields) == {"step", *STEP_METRICS, "extra"}


def test_a_probe_step_reaches_rest_under_its_own_names(tmp_path) -> None:
    engine = init_database(f"sqlite:///{tmp_path / 'v.db'}")
    with session_scope(engine) as session:
        sweep = repository.create_sweep(session, name="v", spec={}, n_trials=1)
        repository.upsert_trial(
            session, sweep_id=sweep.id, number=0, weights=[1.0], alpha=0.5, state=TrialState.RUNNING
        )
        repository.record_steps(
            session,
            sweep_id=sweep.id,
            trial_number=0,
            steps=[_probe_step(1), {"step": 2, "reward": 0.5}],  # the old name still lands
        )
    with session_scope(engine, read_only=True) as session:
        trial = repository.get_trial(session, sweep_id=sweep.id, number=0)
        body = TrialDetail.model_validate(trial)
    first, second = body.steps
    assert first.reward_mean == 0.25 and first.kl is None  # not finite: stored as null
    assert first.extra is not None and first.extra["token_entropy"] == 0.25
    assert set(first.extra) == set(ProbeStep.model_fields) - {"step", *STEP_METRICS}
    assert second.reward_mean == 0.5 and second.extra is None
    dumped = first.model_dump()
    assert "reward" not in dumped and dumped["reward_mean"] == 0.25
