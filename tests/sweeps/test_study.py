"""The Optuna room of a sweep: a trial's decorations and its curve artifact (real SQLite)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.trial import TrialState
from sqlalchemy import event

from sweeps._optuna_search import TrialVerdict
from sweeps._study import (
    curves_filename,
    curves_missing,
    decorate_trial,
    set_user_attrs,
    study_storage,
    upload_trial_curves,
)
from sweeps.reports import TrialRecord

RESULT = {
    "stability/length_retention": 0.9,
    "stability/collapsed": False,
    "stability/constraints/not_collapsed": -0.4,
    "benchmarks/benchmark": 0.5,
    "timings/total_s": 4.2,
    "placement/node": "127.0.0.1/abc",
    "probe/detail": None,
    "objectives/stability": 0.9,  # not a dashboard attribute: it is the trial's value
    "stability/curve": [1.0, 2.0],  # not a scalar
}


def _study(tmp_path: Path) -> optuna.Study:
    storage = study_storage(f"sqlite:///{tmp_path / 'study.sqlite'}")
    return optuna.create_study(storage=storage, directions=["maximize", "maximize"])


def test_a_trial_is_decorated_in_one_transaction(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    commits = []
    backend = trial.storage._backend  # type: ignore[attr-defined]
    event.listen(backend.engine, "commit", lambda _conn: commits.append(1))
    set_user_attrs(trial, {f"stability/metric_{k}": float(k) for k in range(30)})
    assert len(commits) == 1
    assert study.trials[0].user_attrs == {f"stability/metric_{k}": float(k) for k in range(30)}


def test_decorate_sets_constraints_and_the_scalar_dashboard_metrics(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    decorate_trial(trial, RESULT, verdict=TrialVerdict(TrialState.COMPLETE, [0.9, 0.5], None))
    study.tell(trial, [0.9, 0.5])
    stored = study.trials[0]
    assert stored.user_attrs == {
        "stability/length_retention": 0.9,
        "stability/collapsed": False,
        "stability/constraints/not_collapsed": -0.4,
        "benchmarks/benchmark": 0.5,
        "timings/total_s": 4.2,
        "placement/node": "127.0.0.1/abc",
        "probe/detail": None,
    }
    assert stored.constraints == {"not_collapsed": -0.4}


def test_the_curves_of_a_told_trial_become_a_study_artifact(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    study.tell(trial, [0.9, 0.5])
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir()
    steps = [{"step": s, "length_mean": 20.0 - s, "reward_mean": 0.1 * s} for s in (1, 2, 3)]
    assert curves_missing(study, store) == {trial.number}
    record = TrialRecord(trial.number, (0.5, 0.5), 0.2, "complete", steps=steps)
    upload_trial_curves(study, store, record)
    assert curves_missing(study, store) == set()
    (meta,) = get_all_artifact_meta(study)
    assert meta.filename == curves_filename(trial.number)
    png = (tmp_path / "artifacts" / meta.artifact_id).read_bytes()
    assert png.startswith(b"\x89PNG")
    # A kill between Optuna's meta write and its file write leaves a meta without a file.
    (tmp_path / "artifacts" / meta.artifact_id).unlink()
    assert curves_missing(study, store) == {trial.number}
