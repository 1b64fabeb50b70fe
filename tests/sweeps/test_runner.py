"""The sweep runner for real: Ray Tune + Optuna + SQLite on the demo world, short probes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from storage import (
    RunEnd,
    SweepLease,
    create_sweep,
    get_front,
    get_sweep,
    get_trial,
    init_database,
    list_trials,
    request_cancel,
    session_scope,
)
from sweeps._study import curves_filename
from sweeps.exceptions import SweepRunError
from sweeps.results import load_report_data
from sweeps.runner import INTERRUPTED_ATTR, run_sweep
from sweeps.spec import SweepSpec
from tests.demo_specs import write_demo_spec
from tests.sweeps.conftest import ResumedSweep, run_cli

pytestmark = pytest.mark.slow


def _study(url: str, sweep_id: str) -> optuna.Study:
    engine = init_database(url)
    with session_scope(engine, read_only=True) as session:
        study_name = get_sweep(session, sweep_id=sweep_id).study_name
    return optuna.load_study(study_name=study_name, storage=url)


def _assert_nothing_running(url: str, sweep_id: str) -> None:
    study = _study(url, sweep_id)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    engine = init_database(url)
    with session_scope(engine, read_only=True) as session:
        trials = list_trials(session, sweep_id=sweep_id).items
    assert all(t.state.value != "running" for t in trials)


def test_killed_run_resumes_without_losing_trials(resumed_sweep: ResumedSweep) -> None:
    rerun = resumed_sweep.rerun
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resuming sweep {resumed_sweep.sweep_id}" in rerun.stdout
    url, sweep_id = resumed_sweep.database_url, resumed_sweep.sweep_id
    engine = init_database(url)
    with session_scope(engine, read_only=True) as session:
        sweep = get_sweep(session, sweep_id=sweep_id)
        trials = {t.number: t for t in list_trials(session, sweep_id=sweep_id).items}
    assert sweep.status.value == "succeeded" and sweep.attempts == 2
    # Every trial finished before the kill is still there, unchanged.
    for number, objectives in resumed_sweep.complete_before_kill.items():
        assert trials[number].state.value == "complete"
        assert trials[number].objectives == objectives
    # The budget is spent exactly: 4 trials counted, interrupted ones re-run.
    study = _study(url, sweep_id)
    counted = [t for t in study.trials if not t.user_attrs.get(INTERRUPTED_ATTR)]
    assert len(counted) == 4
    assert all(t.state is TrialState.COMPLETE for t in counted)
    # A kill between Optuna's ask and the ratios' suggestion leaves a trial that never ran:
    # failed by the resume, with no row (an enqueued one is retried with its enqueued ratios,
    # so the seed points all ran: the kinds above).
    never_ran = [t for t in study.trials if not t.params]
    assert all(t.state is TrialState.FAIL and t.number not in trials for t in never_ran)
    ran = [t for t in study.trials if t.params]
    interrupted = [t for t in ran if t.user_attrs.get(INTERRUPTED_ATTR)]
    for trial in interrupted:
        assert trial.state is TrialState.FAIL
        assert trials[trial.number].state.value == "failed"
        assert trials[trial.number].error.startswith("interrupted")
        retries = [t for t in study.trials if t.user_attrs.get("retry_of") == trial.number]
        assert len(retries) == 1 and retries[0].params == trial.params
    # No candidate ran twice: the resumed sampler continued instead of replaying its stream.
    ratios = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(ratios)) == len(ratios), ratios
    # Optuna's tell and our rows agree on every trial, whatever the kill interrupted.
    names = SweepSpec.from_file(resumed_sweep.spec_file).objective_names
    states = {"COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned"}
    assert sorted(trials) == sorted(t.number for t in ran)
    for told in ran:
        assert trials[told.number].state.value == states[told.state.name]
        if told.state is TrialState.COMPLETE:
            assert told.values == [trials[told.number].objectives[n] for n in names]
    _assert_nothing_running(url, sweep_id)


def test_sweep_records_steps_front_report_and_dashboard_data(
    resumed_sweep: ResumedSweep,
) -> None:
    url, sweep_id = resumed_sweep.database_url, resumed_sweep.sweep_id
    spec = SweepSpec.from_file(resumed_sweep.spec_file)
    engine = init_database(url)
    with session_scope(engine, read_only=True) as session:
        complete = [
            get_trial(session, sweep_id=sweep_id, number=t.number)
            for t in list_trials(session, sweep_id=sweep_id, state="complete").items
        ]
        front = get_front(session, sweep_id=sweep_id)
    assert len(complete) == 4
    kinds = sorted(t.seed_kind.value if t.seed_kind else "sampled" for t in complete)
    assert kinds == ["baseline", "baseline", "explicit", "sampled"]
    for trial in complete:
        # Every probe step was streamed into the database.
        assert [s.step for s in trial.steps] == list(range(1, spec.probe.steps + 1))
        assert all(s.length_mean is not None and s.reward is not None for s in trial.steps)
        assert set(trial.objectives) == {"stability", "benchmark"}
        assert 0.0 <= trial.objectives["stability"] <= 1.0
        assert trial.stability["stability"] == pytest.approx(trial.objectives["stability"])
        assert trial.benchmarks["benchmark"] == trial.objectives["benchmark"]
        # Two seeds each: the objectives are their means, each seed's values kept.
        stats = trial.stability["objective_stats"]
        assert [s["seed"] for s in trial.stability["seeds"]] == [0, 1]
        for name, value in trial.objectives.items():
            assert stats[name]["n"] == 2 and len(stats[name]["values"]) == 2
            assert value == pytest.approx(sum(stats[name]["values"]) / 2)
    # The stored front is the Pareto front of the feasible trials, with its hypervolume.
    assert front is not None and front.members
    # Each CLI line of a finished trial shows the front including that trial (the live
    # hypervolume is read once the recorder stored the trial's front, not before).
    with session_scope(engine, read_only=True) as session:
        data = load_report_data(session, sweep_id=sweep_id, with_steps=False)
    lines = re.findall(
        r"^\[\d+/\d+\] hv (\S+) · trial #(\d+) (complete|failed|pruned)",
        resumed_sweep.rerun.stdout,
        flags=re.MULTILINE,
    )
    assert lines, resumed_sweep.rerun.stdout
    seen = set(resumed_sweep.complete_before_kill)
    for shown, number, state in lines:
        if state == "complete":
            seen.add(int(number))
        so_far = dataclasses.replace(data, trials=[t for t in data.trials if t.number in seen])
        assert shown == f"{so_far.hypervolume():.4f}", (number, resumed_sweep.rerun.stdout)
    assert seen == {t.number for t in complete}
    assert front.reference_point == [0.0, 0.0]
    feasible = [t for t in complete if all(v <= 0 for v in t.stability["constraints"].values())]
    points = {t.number: (t.objectives["stability"], t.objectives["benchmark"]) for t in feasible}
    for member in front.members:
        mine = points[member.trial_number]
        assert not any(
            other[0] >= mine[0] and other[1] >= mine[1] and other != mine
            for other in points.values()
        )
    assert front.hypervolume > 0
    # The report of the resumed run.
    report = resumed_sweep.directory / "report"
    payload = json.loads((report / "report.json").read_text())
    assert payload["hypervolume"] == pytest.approx(front.hypervolume)
    interval = payload["hypervolume_interval"]
    assert interval["low"] <= payload["hypervolume"] <= interval["high"]
    assert "## Recommendation" in (report / "report.md").read_text()
    assert {"pareto.png", "hypervolume.png", "curves.png", "report.md"} <= {
        p.name for p in report.iterdir()
    }
    # export_front: each front member's actor merged to disk, the recipe beside it.
    by_number = {t.number: t for t in complete}
    for member in front.members:
        actor = Path(by_number[member.trial_number].actor_path)
        assert actor.parent == resumed_sweep.directory / "data" / "exports" / sweep_id
        assert (actor / "model.safetensors").is_file()
        recipe = json.loads((actor / "bai_recipe.json").read_text())
        assert recipe["alpha"] == pytest.approx(member.alpha)
        assert recipe["weights"] == pytest.approx(member.weights)
    front_numbers = {m.trial_number for m in front.members}
    assert all(t.actor_path is None for t in complete if t.number not in front_numbers)
    # optuna-dashboard data: metrics as user attributes, each trial's curve PNG as an artifact
    # of the study named by the trial.
    study = _study(url, sweep_id)
    artifacts = resumed_sweep.directory / "data" / "artifacts"
    # A meta whose file a kill lost (Optuna writes the meta first) is re-uploaded on resume.
    curves = {
        meta.filename: meta.artifact_id
        for meta in get_all_artifact_meta(study)
        if (artifacts / meta.artifact_id).is_file()
    }
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert "stability/length_retention" in trial.user_attrs
        assert "benchmarks/benchmark" in trial.user_attrs
        artifact_id = curves[curves_filename(trial.number)]
        assert (artifacts / artifact_id).read_bytes().startswith(b"\x89PNG")


def test_diverged_probes_score_zero_and_are_told_complete(demo_world: Any, tmp_path: Path) -> None:
    # A learning rate of 1e12 turns the actor's weights to NaN/inf at the first update.
    spec_file = write_demo_spec(
        demo_world,
        tmp_path / "nan.yaml",
        name="test-nan",
        search={"n_trials": 2, "seed_points": "none", "sampler": "random"},
        probe={"learning_rate": 1e12},
        resources={"max_concurrent_trials": 1},
        constraints={"not_collapsed": True},
    )
    url = f"sqlite:///{tmp_path / 'nan.sqlite'}"
    result = run_cli(
        ["run", str(spec_file), "--db", url, "--compare-to", "none"],
        env={**os.environ, "BAI_SWEEP_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 3 steps are under two stability windows: said before the sweep starts.
    assert "warning: probe.steps (3) is under two stability windows" in result.stderr
    engine = init_database(url)
    with session_scope(engine, read_only=True) as session:
        trials = list_trials(session, sweep_id=_only_sweep(session)).items
        sweep = get_sweep(session, sweep_id=trials[0].sweep_id)
    # Not failed: complete with stability 0 and flagged, so the sampler learns the region.
    assert [t.state.value for t in trials] == ["complete", "complete"]
    for trial in trials:
        assert trial.stability["diverged"] is True and trial.stability["stability"] == 0.0
        assert trial.objectives["stability"] == 0.0
        assert trial.stability["constraints"]["not_collapsed"] == 1.0
    study = _study(url, sweep.id)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert all(t.values[0] == 0.0 for t in study.trials)
    # Both broke the not-collapsed constraint: told to Optuna, and kept off both fronts.
    assert all(t.constraints == {"not_collapsed": 1.0} for t in study.trials)
    assert study.best_trials == []
    with session_scope(engine, read_only=True) as session:
        assert get_front(session, sweep_id=sweep.id).members == []
    _assert_nothing_running(url, sweep.id)


def _only_sweep(session: Any) -> str:
    from storage import list_sweeps

    (sweep,) = list_sweeps(session).items
    return sweep.id


def test_cancel_stops_the_sweep_promptly(demo_world: Any, tmp_path: Path) -> None:
    spec_file = write_demo_spec(
        demo_world,
        tmp_path / "cancel.yaml",
        name="test-cancel",
        search={"n_trials": 6, "seed_points": "baselines"},
        probe={"steps": 30},
    )
    spec = SweepSpec.from_file(spec_file)
    url = f"sqlite:///{tmp_path / 'cancel.sqlite'}"
    engine = init_database(url)
    with session_scope(engine) as session:
        sweep = create_sweep(session, name=spec.name, spec=spec.to_json_dict(), n_trials=6)
    lease = SweepLease.claim(
        engine, sweep_id=sweep.id, worker_id="test-worker", heartbeat_interval=0.5
    )
    assert lease is not None
    outcome: dict[str, Any] = {}
    events: list[str] = []

    def run() -> None:
        with lease:
            outcome["value"] = run_sweep(
                lease=lease, data_dir=tmp_path / "data", progress=lambda p: events.append(p.event)
            )
            lease.settle(outcome["value"].status)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(" step " in e for e in events):
        time.sleep(0.2)
    assert any(" step " in e for e in events), events
    with session_scope(engine) as session:
        request_cancel(session, sweep_id=sweep.id)
    thread.join(timeout=300)
    assert not thread.is_alive()
    result = outcome["value"]
    assert result.status == "cancelled", result
    with session_scope(engine, read_only=True) as session:
        stored = get_sweep(session, sweep_id=sweep.id)
        trials = list_trials(session, sweep_id=sweep.id).items
    assert stored.status.value == "cancelled"
    assert trials and all(t.state.value in ("complete", "pruned") for t in trials)
    assert any(t.state.value == "pruned" and t.error == "cancelled" for t in trials)
    assert len(trials) < 6
    _assert_nothing_running(url, sweep.id)
    # The cancel did not wait for the running 30-step probes to finish.
    with session_scope(engine, read_only=True) as session:
        pruned = [
            get_trial(session, sweep_id=sweep.id, number=t.number)
            for t in trials
            if t.state.value == "pruned"
        ]
    assert all(len(t.steps) < 30 for t in pruned)


def test_run_sweep_refuses_a_settled_lease_and_ray_client(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = init_database(url)
    with session_scope(engine) as session:
        sweep = create_sweep(session, name="x", spec={}, n_trials=1)
    lease = SweepLease.claim(engine, sweep_id=sweep.id, worker_id="w")
    assert lease is not None
    with pytest.raises(SweepRunError, match="ray://"):
        run_sweep(lease=lease, data_dir=tmp_path, ray_address="ray://head:10001")
    lease.settle(RunEnd.FAILED, "test")
    with pytest.raises(SweepRunError, match="is finished"):
        run_sweep(lease=lease, data_dir=tmp_path)
