"""Nightly comparison and exit codes (resume-or-create: tests/storage/test_lease.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sweeps.nightly import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REGRESSION,
    compare_sweeps,
    exit_code,
)
from sweeps.reports import ObjectiveInfo, SweepReportData, TrialRecord
from tests.sweeps.conftest import ResumedSweep, run_cli

OBJECTIVES = [ObjectiveInfo("stability", "maximize", 0.0), ObjectiveInfo("kl", "minimize", 1.0)]


def _data(sweep_id: str, *points: tuple[float, float], objectives=OBJECTIVES) -> SweepReportData:
    trials = [
        TrialRecord(i, (0.5, 0.5), 0.5, "complete", None, {"stability": s, "kl": k})
        for i, (s, k) in enumerate(points)
    ]
    return SweepReportData(sweep_id, "nightly", "succeeded", objectives, trials, n_trials=4)


def test_first_run_has_nothing_to_compare() -> None:
    comparison = compare_sweeps(_data("a", (0.5, 0.5)), None, tolerance=0.02)
    assert not comparison.regressed
    assert comparison.hypervolume == pytest.approx(0.25)
    assert "no previous successful sweep" in comparison.lines()[0]


def test_equal_or_better_is_not_a_regression() -> None:
    previous = _data("a", (0.5, 0.5))
    assert not compare_sweeps(_data("b", (0.5, 0.5)), previous, tolerance=0.0).regressed
    assert not compare_sweeps(_data("b", (0.6, 0.4), (0.5, 0.5)), previous, tolerance=0.0).regressed


def test_small_drop_within_tolerance() -> None:
    previous = _data("a", (0.5, 0.5))
    comparison = compare_sweeps(_data("b", (0.49, 0.5)), previous, tolerance=0.02)
    assert not comparison.regressed
    assert comparison.hypervolume < comparison.previous_hypervolume


def test_hypervolume_and_best_value_regressions() -> None:
    previous = _data("a", (0.8, 0.2), (0.3, 0.1))
    current = _data("b", (0.5, 0.3))
    comparison = compare_sweeps(current, previous, tolerance=0.02)
    assert comparison.regressed
    text = "\n".join(comparison.lines())
    assert "hypervolume fell from" in text
    assert "best stability went from 0.8000 to 0.5000" in text
    assert "best kl went from 0.1000 to 0.3000" in text  # minimised: higher is worse


def test_different_reference_points_are_not_compared_by_hypervolume() -> None:
    other = [ObjectiveInfo("stability", "maximize", 0.0), ObjectiveInfo("kl", "minimize", 5.0)]
    previous = _data("a", (0.5, 0.5), objectives=other)
    comparison = compare_sweeps(_data("b", (0.5, 0.5)), previous, tolerance=0.0)
    assert not comparison.hypervolume_comparable and not comparison.regressed
    assert "not comparable" in comparison.lines()[0]


def test_no_completed_trial_is_a_regression() -> None:
    empty = SweepReportData("b", "nightly", "succeeded", OBJECTIVES, [], n_trials=4)
    comparison = compare_sweeps(empty, _data("a", (0.5, 0.5)), tolerance=0.02)
    assert comparison.regressed


def test_exit_codes() -> None:
    ok = compare_sweeps(_data("b", (0.5, 0.5)), _data("a", (0.5, 0.5)), tolerance=0.0)
    bad = compare_sweeps(_data("b", (0.1, 0.5)), _data("a", (0.5, 0.5)), tolerance=0.0)
    assert exit_code("succeeded", ok) == EXIT_OK == 0
    assert exit_code("succeeded", None) == EXIT_OK
    assert exit_code("succeeded", bad) == EXIT_REGRESSION == 3
    assert exit_code("failed", ok) == EXIT_FAILED == 1
    assert exit_code("cancelled", None) == EXIT_FAILED
    with pytest.raises(ValueError):
        compare_sweeps(_data("b"), None, tolerance=-1)


@pytest.mark.slow
def test_real_regression_exits_3(resumed_sweep: ResumedSweep) -> None:
    # Same name and objectives, but only the pretrained base (alpha = 1): a worse front.
    spec = yaml.safe_load(resumed_sweep.spec_file.read_text())
    spec["search"] = {"n_trials": 1, "seed_points": [{"alpha": 1.0}], "sampler": "random"}
    worse = resumed_sweep.directory / "worse.yaml"
    worse.write_text(yaml.safe_dump(spec))
    report = resumed_sweep.directory / "worse-report"
    result = run_cli(
        [
            "run",
            str(worse),
            "--db",
            resumed_sweep.database_url,
            "--report-dir",
            str(report),
            "--tolerance",
            "0",
        ],
        env=resumed_sweep.env,
        cwd=resumed_sweep.directory,
    )
    assert result.returncode == EXIT_REGRESSION, result.stdout + result.stderr
    assert "REGRESSION" in result.stdout
    comparison = json.loads((report / "comparison.json").read_text())
    assert comparison["previous_sweep_id"] == resumed_sweep.sweep_id
    assert comparison["regressions"]


def test_nightly_workflow_runs_the_run_command() -> None:
    from typer.testing import CliRunner

    from service.cli import app

    root = Path(__file__).resolve().parents[2]
    workflow = yaml.safe_load((root / ".github" / "workflows" / "nightly-sweep.yml").read_text())
    assert workflow[True]["schedule"][0]["cron"]  # YAML 1.1 reads the `on` key as True
    steps = workflow["jobs"]["sweep"]["steps"]
    script = next(step["run"] for step in steps if step.get("id") == "sweep")
    assert 'bai-sweep run "$SPEC"' in script
    assert (root / workflow["env"]["SPEC"]).is_file()
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    for option in ("--report-dir", "--compare-to"):
        assert option in script and option in help_text
    assert any("upload-artifact" in step.get("uses", "") for step in steps)
