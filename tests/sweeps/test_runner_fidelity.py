"""A real small successive-halving sweep: Ray Tune, TRL probes, lm-eval, SQLite, demo world."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import optuna
import pytest

from storage import (
    get_front,
    get_sweep,
    get_trial,
    init_database,
    list_sweeps,
    list_trials,
    session_scope,
)
from sweeps.fidelity import promote
from sweeps.results import trial_record
from sweeps.spec import SweepSpec
from tests.demo_specs import write_demo_spec
from tests.sweeps.conftest import run_cli

pytestmark = pytest.mark.slow


def test_sweep_promotes_the_best_candidate_to_the_full_probe(
    demo_world: Any, tmp_path: Path
) -> None:
    # 3 candidates (both baselines, alpha 0.5) probed for 1 update on 1 seed; the best one
    # (3 // 3) again for the full 2 updates on 2 seeds: 4 trials.
    spec_file = write_demo_spec(
        demo_world,
        tmp_path / "halving.yaml",
        name="test-halving",
        search={"n_trials": 3},
        probe={"steps": 2, "repeats": 2},
        fidelity={"enabled": True, "rungs": 2, "eta": 3, "min_steps": 1},
    )
    spec = SweepSpec.from_file(spec_file)
    url = f"sqlite:///{tmp_path / 'halving.sqlite'}"
    report_dir = tmp_path / "report"
    result = run_cli(
        [
            "run",
            str(spec_file),
            "--db",
            url,
            "--compare-to",
            "none",
            "--report-dir",
            str(report_dir),
        ],
        env={**os.environ, "BAI_SWEEP_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 trials (probe runs) for 3 candidates over 2 rungs" in result.stdout
    engine = init_database(url)
    with session_scope(engine, read_only=True) as session:
        (sweep,) = list_sweeps(session).items
        assert get_sweep(session, sweep_id=sweep.id).n_trials == 4
        trials = [
            get_trial(session, sweep_id=sweep.id, number=t.number)
            for t in list_trials(session, sweep_id=sweep.id).items
        ]
        front = get_front(session, sweep_id=sweep.id)
    assert [t.state.value for t in trials] == ["complete"] * 4
    rung0 = [t for t in trials if t.fidelity["rung"] == 0]
    (top,) = [t for t in trials if t.fidelity["rung"] == 1]
    assert len(rung0) == 3
    assert all(
        t.fidelity == {"rung": 0, "steps": 1, "repeats": 1, "candidate": t.number} for t in rung0
    )
    # The promoted candidate is promote()'s pick on rung 0's means, re-probed at full fidelity.
    names = spec.objective_names
    scores = {t.number: [t.objectives[n] for n in names] for t in rung0}
    (best,) = promote(scores, spec.directions, eta=3, reference=spec.reference_point)
    assert top.fidelity == {"rung": 1, "steps": 2, "repeats": 2, "candidate": best}
    source = next(t for t in rung0 if t.number == best)
    assert (top.weights, top.alpha, top.seed_kind) == (
        source.weights,
        source.alpha,
        source.seed_kind,
    )
    assert [s.step for s in top.steps] == [1, 2] and [s.step for s in source.steps] == [1]
    assert len(top.stability["seeds"]) == 2 and len(source.stability["seeds"]) == 1
    # Only the top rung competes: the front is the promoted trial alone.
    assert front is not None and [m.trial_number for m in front.members] == [top.number]
    # The rung is visible in Optuna (dashboard) and in the report.
    with session_scope(engine, read_only=True) as session:
        study_name = get_sweep(session, sweep_id=sweep.id).study_name
    study = optuna.load_study(study_name=study_name, storage=url)
    attrs = {t.number: t.user_attrs for t in study.trials}
    assert (attrs[top.number]["rung"], attrs[top.number]["probe_steps"]) == (1, 2)
    payload = json.loads((report_dir / "report.json").read_text())
    # Recommended when its 2 seeds show it keeps its length (sweeps.reports' gate), else none.
    recommendation = payload["recommendation"]
    if trial_record(top).keeps_length(spec.probe.collapse_threshold):
        assert recommendation["trial_number"] == top.number
        assert recommendation["seeds"] == 2 and payload["gated_out"] == []
    else:
        assert recommendation is None
        assert [t["trial_number"] for t in payload["gated_out"]] == [top.number]
    assert payload["rungs"] == [
        "rung 0: 3 probe runs of 1 steps x 1 seeds (3 complete)",
        "rung 1: 1 probe runs of 2 steps x 2 seeds (1 complete)",
    ]
    assert "rung 1" in (report_dir / "report.md").read_text()
