"""Nightly comparison and exit codes (resume-or-create: tests/storage/test_lease.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeps.nightly import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REGRESSION,
    compare_sweeps,
    exit_code,
    regressed,
    warm_start_spec,
)
from sweeps.reports import ObjectiveInfo, SweepReportData, TrialRecord
from sweeps.spec import SweepSpec
from sweeps.statistics import Interval, mean_interval
from tests.demo_specs import write_demo_spec
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
    assert comparison.hypervolume.mean == pytest.approx(0.25)
    assert "no previous successful sweep" in comparison.lines()[0]


def test_equal_or_better_is_not_a_regression() -> None:
    previous = _data("a", (0.5, 0.5))
    assert not compare_sweeps(_data("b", (0.5, 0.5)), previous, tolerance=0.0).regressed
    assert not compare_sweeps(_data("b", (0.6, 0.4), (0.5, 0.5)), previous, tolerance=0.0).regressed


def test_small_drop_within_tolerance() -> None:
    previous = _data("a", (0.5, 0.5))
    comparison = compare_sweeps(_data("b", (0.49, 0.5)), previous, tolerance=0.02)
    assert not comparison.regressed
    assert comparison.hypervolume.mean < comparison.previous_hypervolume.mean


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


def _forecast_data(sweep_id: str, length: float, horizon: int) -> SweepReportData:
    objectives = [
        ObjectiveInfo("stability", "maximize", 0.0),
        ObjectiveInfo("length_at_horizon", "maximize", 0.0),
    ]
    trial = TrialRecord(
        0,
        (0.5, 0.5),
        0.5,
        "complete",
        None,
        {"stability": 0.5, "length_at_horizon": length},
        {"length_forecast": {"horizon": horizon, "seeds_fitted": 1, "seeds": 1}},
    )
    return SweepReportData(sweep_id, "nightly", "succeeded", objectives, [trial], n_trials=1)


def test_lengths_forecast_at_different_horizons_are_not_compared() -> None:
    previous = _forecast_data("a", 90.0, horizon=180)
    shorter = compare_sweeps(_forecast_data("b", 30.0, horizon=48), previous)
    assert not shorter.regressed and not shorter.hypervolume_comparable
    assert shorter.not_compared == {
        "length_at_horizon": "forecast at update 48 here but 180 in sweep a"
    }
    assert "length_at_horizon" not in shorter.previous_best
    assert "length_at_horizon not compared: forecast at update 48" in "\n".join(shorter.lines())
    assert shorter.to_json()["not_compared"] == shorter.not_compared
    # The same horizon: compared, and a fall beyond the margin is a regression.
    same = compare_sweeps(_forecast_data("c", 30.0, horizon=180), previous)
    assert same.not_compared == {} and same.hypervolume_comparable
    assert any("best length_at_horizon" in r for r in same.regressions)


def test_no_completed_trial_is_a_regression() -> None:
    empty = SweepReportData("b", "nightly", "succeeded", OBJECTIVES, [], n_trials=4)
    comparison = compare_sweeps(empty, _data("a", (0.5, 0.5)), tolerance=0.02)
    assert comparison.regressed


def _seeded(
    sweep_id: str, *trials: tuple[tuple[float, ...], float, list[float], list[float]]
) -> SweepReportData:
    """Trials with per-seed stability and kl values: (weights, alpha, stabilities, kls)."""
    records = []
    for number, (weights, alpha, stability, kl) in enumerate(trials):
        stats = {
            name: {**mean_interval(values).to_json(), "values": values}
            for name, values in (("stability", stability), ("kl", kl))
        }
        records.append(
            TrialRecord(
                number,
                weights,
                alpha,
                "complete",
                None,
                {name: entry["mean"] for name, entry in stats.items()},
                {"objective_stats": stats},
            )
        )
    return SweepReportData(sweep_id, "nightly", "succeeded", OBJECTIVES, records, n_trials=4)


def test_interval_rule_by_hand() -> None:
    previous = Interval(0.5, 0.4, 0.6, 0.05, 3)
    assert not regressed(Interval(0.45, 0.38, 0.52, 0.03, 3), previous, "maximize")
    assert regressed(Interval(0.3, 0.25, 0.35, 0.03, 3), previous, "maximize")
    # The margin widens the gap the intervals must leave: 0.35 + 0.1 >= 0.4.
    assert not regressed(Interval(0.3, 0.25, 0.35, 0.03, 3), previous, "maximize", margin=0.1)
    assert regressed(Interval(0.7, 0.65, 0.75, 0.03, 3), previous, "minimize")
    # Without intervals both sides are their means.
    assert regressed(mean_interval([0.49]), mean_interval([0.5]), "maximize")


def test_a_drop_inside_the_intervals_is_not_a_regression() -> None:
    previous = _seeded("a", ((0.5, 0.5), 0.5, [0.9, 0.7, 0.8], [0.2, 0.3, 0.25]))
    # Means fall from 0.8 to 0.7, but the seeds spread wider than that.
    current = _seeded("b", ((0.5, 0.5), 0.5, [0.8, 0.6, 0.7], [0.2, 0.3, 0.25]))
    comparison = compare_sweeps(current, previous)
    assert comparison.best["stability"].mean < comparison.previous_best["stability"].mean
    assert comparison.hypervolume.mean < comparison.previous_hypervolume.mean
    assert not comparison.regressed, comparison.regressions
    assert comparison.drifts == []
    assert "1 candidate(s) evaluated in both sweeps" in comparison.lines()


def test_two_seeds_spread_into_the_hypervolume_interval() -> None:
    # Stability 0.85/0.95 then 0.70/0.78 on two seeds, kl unchanged. Resampling two seeds could
    # only reach [0.85, 0.95] and [0.70, 0.78] (apart: a "regression"); their t(1) intervals
    # are 0.90 -/+ 0.64 and 0.74 -/+ 0.51, and the hypervolume's draws carry that spread.
    previous = _seeded("a", ((0.5, 0.5), 0.5, [0.85, 0.95], [0.2, 0.2]))
    current = _seeded("b", ((0.5, 0.5), 0.5, [0.70, 0.78], [0.2, 0.2]))
    comparison = compare_sweeps(current, previous)
    assert comparison.previous_hypervolume is not None
    hv, before = comparison.hypervolume, comparison.previous_hypervolume
    assert hv.low is not None and hv.high is not None and before.low is not None
    assert hv.high > before.low and (hv.high - hv.low) > 0.3
    assert not comparison.regressed, comparison.regressions


def test_a_drop_outside_the_intervals_is_a_regression() -> None:
    previous = _seeded("a", ((0.5, 0.5), 0.5, [0.81, 0.79, 0.8], [0.2, 0.21, 0.2]))
    current = _seeded("b", ((0.5, 0.5), 0.5, [0.41, 0.39, 0.4], [0.2, 0.21, 0.2]))
    comparison = compare_sweeps(current, previous)
    assert comparison.regressed
    text = "\n".join(comparison.lines())
    assert "hypervolume fell from" in text and "best stability went from" in text
    assert "best kl" not in "".join(comparison.regressions)  # kl did not move
    data = comparison.to_json()
    assert data["hypervolume_interval"]["low"] < data["hypervolume_interval"]["high"]
    assert data["same_candidates"][0]["previous_trial"] == 0
    # The same candidate, re-evaluated, is clearly worse on stability (reported, not counted).
    assert comparison.drifts == [
        "#0 w=(0.50, 0.50) a=0.50 stability 0.8000 [0.7752, 0.8248] -> 0.4000 [0.3752, 0.4248]"
    ]
    # A margin larger than the gap between the intervals forgives it.
    assert not compare_sweeps(current, previous, tolerance=0.5).regressed


def _spec(**search) -> SweepSpec:
    models = {"base": "/m/base", "sft": ["/m/a", "/m/b"], "reward": "/m/rm", "prompts": "/m/p"}
    return SweepSpec.parse(
        {"name": "nightly", "models": models, "search": search, "objectives": ["stability", "kl"]}
    )


def test_warm_start_adds_the_previous_front_first() -> None:
    spec = _spec(n_trials=6, seed_points=["baselines", {"alpha": 0.5}])
    previous = _seeded(
        "a",
        ((0.3, 0.7), 0.25, [0.9], [0.4]),  # front
        ((0.6, 0.4), 0.6, [0.6], [0.1]),  # front
        ((0.5, 0.5), 0.5, [0.95], [0.5]),  # front, already a seed point of the spec
        ((0.5, 0.5), 0.9, [0.1], [0.9]),  # dominated
    )
    warmed, warm = warm_start_spec(spec, previous)
    assert warm.source_sweep_id == "a"
    assert sorted(warm.added) == [((0.3, 0.7), 0.25), ((0.6, 0.4), 0.6)]
    points = warmed.seed_points()
    assert [p.kind for p in points] == ["explicit", "explicit", "baseline", "baseline", "explicit"]
    assert {(p.candidate.weights, p.candidate.alpha) for p in points[:2]} == set(warm.added)
    assert len(spec.seed_points()) == 3  # the given spec is unchanged
    assert "2 front ratio(s) of sweep a" in warm.lines()[0]


def test_warm_start_respects_the_budget_and_the_space() -> None:
    previous = _seeded("a", ((0.3, 0.7), 0.25, [0.9], [0.4]), ((0.6, 0.4), 0.6, [0.6], [0.1]))
    full = _spec(n_trials=4, seed_points=["baselines", {"alpha": 0.5}])
    warmed, warm = warm_start_spec(full, previous)
    assert len(warm.added) == 1 and len(warm.skipped) == 1
    assert "no room" in warm.skipped[0]
    narrow = _spec(n_trials=8, alpha=[0.5, 1.0], seed_points="none")
    warmed, warm = warm_start_spec(narrow, previous)
    assert warm.added == [((0.6, 0.4), 0.6)]
    assert "outside" in warm.skipped[0]
    assert [p.kind for p in warmed.seed_points()] == ["explicit"]
    unchanged, warm = warm_start_spec(narrow, None)
    assert unchanged is narrow and warm.lines() == ["warm start: no previous successful sweep"]


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


def _run_variant(resumed_sweep: ResumedSweep, name: str, search: dict, *extra: str):
    """``bai-sweep run`` on a variant of the resumed sweep's spec (same name and objectives)."""
    spec = yaml.safe_load(resumed_sweep.spec_file.read_text())
    spec["search"] = search
    path = resumed_sweep.directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    report = resumed_sweep.directory / f"{name}-report"
    result = run_cli(
        [
            "run",
            str(path),
            "--db",
            resumed_sweep.database_url,
            "--report-dir",
            str(report),
            "--compare-to",
            resumed_sweep.sweep_id,
            *extra,
        ],
        env=resumed_sweep.env,
        cwd=resumed_sweep.directory,
    )
    return result, report


@pytest.mark.slow
def test_real_single_candidate_within_noise_is_not_a_regression(
    resumed_sweep: ResumedSweep,
) -> None:
    # Only the pretrained base (alpha = 1), without re-evaluating the front: a lower front on
    # the means, but with two seeds per candidate its intervals (t with one degree of freedom,
    # propagated into the hypervolume) overlap the previous sweep's: not a regression (a real
    # regression: test_real_broken_checkpoint_is_a_regression).
    result, report = _run_variant(
        resumed_sweep,
        "worse",
        {"n_trials": 1, "seed_points": [{"alpha": 1.0}], "sampler": "random"},
        "--no-warm-start",
    )
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert "REGRESSION" not in result.stdout
    # The terminal names the recommendation (or says why there is none), as the report does.
    assert "recommendation (the rule is in the report):" in result.stdout
    chosen = json.loads((report / "report.json").read_text())["recommendation"]
    if chosen is None:
        assert "No recommendation:" in result.stdout
    else:
        assert f"use #{chosen['trial_number']} " in result.stdout
    comparison = json.loads((report / "comparison.json").read_text())
    assert comparison["previous_sweep_id"] == resumed_sweep.sweep_id
    assert comparison["regressions"] == [] and comparison["warm_start"] is None
    current, previous = (
        comparison["hypervolume_interval"],
        comparison["previous_hypervolume_interval"],
    )
    assert current["n"] == 1
    assert current["high"] >= previous["low"] and current["low"] < current["mean"]


def _untrained_copy(source: str, target: Path) -> Path:
    """A real checkpoint of ``source``'s architecture and tokenizer whose weights are a fresh
    random initialisation (seeded): what a broken training job would have saved."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(source, target)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(target)).save_pretrained(target)
    return target


@pytest.mark.slow
def test_real_broken_checkpoint_is_a_regression(demo_world: Any, tmp_path: Path) -> None:
    # Last night sft-instruct alone; tonight the SFT checkpoints are untrained, so the same
    # ratio builds an untrained actor. Nothing is faked: both sweeps really probe and benchmark
    # their actor, and the intervals decide.
    broken = str(_untrained_copy(str(demo_world.sfts[0]), tmp_path / "broken-sft"))
    env = {**os.environ, "BAI_SWEEP_DATA_DIR": str(tmp_path / "data")}
    url = f"sqlite:///{tmp_path / 'sweeps.sqlite'}"
    search = {"n_trials": 1, "seed_points": [{"weights": [1.0, 0.0], "alpha": 0.0}]}
    results = {}
    for night, models in (("previous", {}), ("tonight", {"sft": [broken, broken]})):
        spec = write_demo_spec(
            demo_world,
            tmp_path / f"{night}.yaml",
            name="nightly-broken",
            search=search,
            models=models,
        )
        report = tmp_path / f"{night}-report"
        args = ["run", str(spec), "--db", url, "--report-dir", str(report), "--no-warm-start"]
        results[night] = run_cli(args, env=env, cwd=tmp_path), report
    assert results["previous"][0].returncode == EXIT_OK, results["previous"][0].stdout
    result, report = results["tonight"]
    assert result.returncode == EXIT_REGRESSION, result.stdout + result.stderr
    assert "exit 3: the front regressed" in result.stdout
    comparison = json.loads((report / "comparison.json").read_text())
    assert comparison["previous_sweep_id"] is not None
    # The benchmark's lm-eval errors give both sides an interval, and they came apart.
    best, before = comparison["best"]["benchmark"], comparison["previous_best"]["benchmark"]
    assert best["high"] < before["low"], comparison
    assert any("benchmark" in line for line in comparison["regressions"]), comparison


@pytest.mark.slow
def test_real_warm_start_reevaluates_the_previous_front(resumed_sweep: ResumedSweep) -> None:
    result, report = _run_variant(
        resumed_sweep,
        "warm",
        {"n_trials": 2, "seed_points": [{"alpha": 1.0}], "sampler": "random"},
    )
    assert result.returncode in (EXIT_OK, EXIT_REGRESSION), result.stdout + result.stderr
    assert f"warm start: 1 front ratio(s) of sweep {resumed_sweep.sweep_id}" in result.stdout
    comparison = json.loads((report / "comparison.json").read_text())
    added = comparison["warm_start"]["added"]
    previous = json.loads((resumed_sweep.directory / "report" / "report.json").read_text())
    front = {(tuple(t["weights"]), t["alpha"]) for t in previous["front"]}
    assert len(added) == 1 and (tuple(added[0]["weights"]), added[0]["alpha"]) in front
    # The front ratio ran first and is compared with its previous evaluation.
    assert [(c["weights"], c["alpha"], c["trial"]) for c in comparison["same_candidates"]] == [
        (added[0]["weights"], added[0]["alpha"], 0)
    ]


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
    assert "--no-warm-start" in help_text and "--tolerance" in help_text
    assert any("upload-artifact" in step.get("uses", "") for step in steps)
