"""SweepSpec: defaults, cross-field validation, seed points, files and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluators.benchmarks import BenchmarkConfig
from evaluators.probe import ProbeConfig
from sweeps.exceptions import InvalidSpecError
from sweeps.fidelity import spec_at
from sweeps.spec import OBJECTIVE_BOUNDS, SweepSpec

MODELS = {
    "base": "/m/base",
    "sft": ["/m/instruct", "/m/reasoning"],
    "reward": "/m/rm",
    "prompts": "/m/prompts.jsonl",
}


def _spec(**overrides: object) -> SweepSpec:
    data: dict[str, object] = {"name": "unit", "models": MODELS}
    data.update(overrides)
    return SweepSpec.parse(data)


def test_defaults() -> None:
    spec = _spec()
    assert spec.search.alpha == (0.0, 1.0)
    assert spec.search.weights == "simplex"
    assert spec.objective_names == ["stability", "benchmark"]
    assert spec.directions == ["maximize", "maximize"]
    assert spec.reference_point == [0.0, 0.0]
    assert isinstance(spec.probe, ProbeConfig) and isinstance(spec.benchmarks, BenchmarkConfig)
    assert [p.candidate.alpha for p in spec.seed_points()] == [0.1, 0.2, 0.5, 0.7, 0.9]
    # The default response budget fits the demo world's 128 positions with room for prompts.
    assert spec.probe.response_length == 128


def test_importing_the_spec_changes_no_environment() -> None:
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import sweeps.spec, sweeps.preflight\n"
        "assert dict(os.environ) == before\n"
        "assert not {'torch', 'transformers', 'lm_eval', 'datasets'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_json_round_trip_is_identical() -> None:
    spec = _spec(
        search={"seed_points": ["baselines", {"alpha": 0.3, "weights": [0.2, 0.8]}]},
        objectives=["stability", {"name": "kl", "reference": 2.0}],
    )
    again = SweepSpec.parse(json.loads(json.dumps(spec.to_json_dict())))
    assert again == spec


def test_spec_is_frozen_and_forbids_unknown_keys() -> None:
    spec = _spec()
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(InvalidSpecError, match=r"search\.n_trial"):
        _spec(search={"n_trial": 3})
    with pytest.raises(InvalidSpecError, match=r"probe\.stepz"):
        _spec(probe={"stepz": 3})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"search": {"alpha": [0.5, 0.2]}}, "search.alpha"),
        ({"search": {"alpha": [0.0, 1.5]}}, "search.alpha"),
        ({"search": {"n_trials": 0}}, "search.n_trials"),
        ({"search": {"sampler": "cmaes"}}, "search.sampler"),
        ({"search": {"weights": [0.5, 0.6]}}, "sum to 1"),
        ({"search": {"weights": [1.0]}}, "search.weights: 1 fixed weights for 2 SFT models"),
        ({"search": {"n_trials": 3}}, "fewer than the 5 seed points"),
        ({"search": {"alpha": [0.3, 1.0], "seed_points": "baselines"}}, "alpha = 0"),
        ({"search": {"alpha": [0.95, 1.0]}}, "no alpha of the paper"),
        ({"search": {"seed_points": [{"alpha": 0.5, "weights": [1.0]}]}}, "outside the search"),
        (
            {"search": {"sampler": "grid", "grid_levels": 2, "seed_points": "none", "n_trials": 5}},
            "exceeds the 4 points",
        ),
        ({"objectives": []}, "objectives"),
        ({"objectives": ["stability", "stability"]}, "unique"),
        ({"objectives": ["speed"]}, "objectives.0"),
        ({"resources": {"max_concurrent_trials": 0}}, "resources.max_concurrent_trials"),
        ({"name": "bad name!"}, "name"),
        ({"models": {**MODELS, "sft": []}}, "models.sft"),
        ({"models": {**MODELS, "sft": ["/m/a"] * 17}}, "models.sft"),
        ({"models": {**MODELS, "base": "/" + "m" * 5000}}, "models.base"),
        ({"search": {"seed_points": [{"alpha": 0.5}] * 257}}, "search.seed_points"),
        ({"probe": {"steps": 10**9}}, "probe.steps"),
        ({"probe": {"response_length": 10**7}}, "probe.response_length"),
        ({"benchmarks": {"selection": [f"t{i}" for i in range(65)]}}, "benchmarks.selection"),
        ({"benchmarks": {"limit": 10**9}}, "benchmarks.limit"),
    ],
)
def test_invalid_specs_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        _spec(**overrides)


def test_exactly_one_reward() -> None:
    models = {k: v for k, v in MODELS.items() if k != "reward"}
    with pytest.raises(InvalidSpecError, match=r"exactly one of models\.reward"):
        SweepSpec.parse({"name": "x", "models": models})


def test_seed_point_combinations_are_deduplicated() -> None:
    spec = _spec(search={"seed_points": ["paper", "baselines", {"alpha": 0.5}], "n_trials": 7})
    kinds = [p.kind for p in spec.seed_points()]
    assert (
        kinds == ["paper"] * 5 + ["baseline"] * 2
    )  # the explicit (0.5, 0.5, 0.5) is a paper point
    assert _spec(search={"seed_points": "none"}).seed_points() == []


def test_single_sft_and_fixed_weights() -> None:
    one = SweepSpec.parse(
        {
            "name": "one",
            "models": {**MODELS, "sft": ["/m/instruct"]},
            "search": {"seed_points": ["paper", "baselines"], "n_trials": 6},
        }
    )
    assert one.search_space().param_names == ["alpha"]
    assert [p.candidate.weights for p in one.seed_points()][-1] == (1.0,)
    fixed = _spec(search={"weights": [0.7, 0.3]})
    assert all(p.candidate.weights == (0.7, 0.3) for p in fixed.seed_points())


def test_objective_directions_and_references() -> None:
    spec = _spec(
        objectives=[
            "benchmark",
            "kl",
            {"name": "reward_gain", "reference": -1.0},
            {"name": "stability", "direction": "minimize"},
        ]
    )
    assert spec.directions == ["maximize", "minimize", "maximize", "minimize"]
    assert spec.reference_point == [0.0, 1.0, -1.0, 1.0]


def test_forgetting_objective_and_its_retention_tasks() -> None:
    spec = _spec(objectives=["stability", "forgetting"])
    assert spec.directions == ["maximize", "minimize"]
    assert spec.reference_point == [0.0, 1.0]
    # The shipped knowledge task among the default selection tasks.
    assert spec.benchmarks.retention_tasks == ["bai_facts_mc"]
    named = _spec(benchmarks={"selection": ["bai_arith_gen"], "retention": ["bai_arith_gen"]})
    assert named.benchmarks.retention_tasks == ["bai_arith_gen"]
    assert _spec(benchmarks={"retention": []}).benchmarks.retention_tasks == []
    with pytest.raises(InvalidSpecError, match="forgetting needs retention tasks"):
        _spec(objectives=["forgetting"], benchmarks={"selection": ["bai_arith_gen"], "report": []})
    with pytest.raises(InvalidSpecError, match=r"retention task.*bai_nope.*neither"):
        _spec(benchmarks={"retention": ["bai_nope"]})


def test_forecast_objectives_their_directions_references_and_horizon() -> None:
    spec = _spec(objectives=["stability", "reward_asymptote", "length_at_horizon"])
    assert spec.directions == ["maximize", "maximize", "maximize"]
    assert spec.reference_point == [0.0, 0.0, 0.0]
    assert OBJECTIVE_BOUNDS["length_at_horizon"] == (0.0, None)
    assert OBJECTIVE_BOUNDS["reward_asymptote"] == (None, None)
    # The horizon defaults to 6x the probe's updates; a spec may set it, not below the probe.
    assert spec.probe.forecast_horizon is None
    assert spec.probe.resolved_forecast_horizon == 6 * 30
    fixed = _spec(probe={"steps": 12, "forecast_horizon": 12})
    assert fixed.probe.resolved_forecast_horizon == 12
    minimized = _spec(
        objectives=[{"name": "length_at_horizon", "direction": "minimize", "reference": 128}]
    )
    assert minimized.reference_point == [128.0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"probe": {"steps": 12, "forecast_horizon": 11}},
            r"probe: forecast_horizon \(11\) is below steps \(12\)",
        ),
        ({"probe": {"forecast_horizon": 0}}, "probe.forecast_horizon"),
        (
            {"objectives": [{"name": "length_at_horizon", "direction": "minimize"}]},
            r"objectives\.0: length_at_horizon minimized needs a reference",
        ),
        (
            {"objectives": ["stability", "length_at_horizon"], "probe": {"steps": 5}},
            r"probe\.steps: 5 updates are too few for the forecast objective length_at_horizon: "
            "a curve is fitted to at least 6 steps",
        ),
        (
            {"objectives": ["reward_asymptote"], "probe": {"steps": 2}},
            "too few for the forecast objective reward_asymptote",
        ),
        (
            {
                "objectives": ["reward_asymptote", "length_at_horizon"],
                "probe": {"steps": 8},
                "fidelity": {"enabled": True, "rungs": 2, "eta": 4, "min_steps": 2},
            },
            r"fidelity\.min_steps: the lowest rung's 2 updates are too few for the forecast "
            "objective reward_asymptote, length_at_horizon",
        ),
    ],
)
def test_forecast_objectives_need_a_probe_long_enough_to_fit(overrides: dict, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        _spec(**overrides)


def test_a_probe_too_short_to_fit_is_fine_without_a_forecast_objective() -> None:
    assert _spec(probe={"steps": 2}).probe.steps == 2
    long_rungs = _spec(
        objectives=["length_at_horizon"],
        probe={"steps": 24},
        fidelity={"enabled": True, "rungs": 2, "eta": 4, "min_steps": 6},
    )
    # Every rung forecasts the full probe's horizon.
    rungs = long_rungs.rungs()
    assert [r.steps for r in rungs] == [6, 24]
    assert {spec_at(long_rungs, r).probe.resolved_forecast_horizon for r in rungs} == {144}


def test_nightly_defaults_to_intervals_and_warm_start() -> None:
    spec = _spec()
    assert spec.nightly.tolerance == 0.0 and spec.nightly.warm_start


def test_from_yaml_resolves_paths_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "what is 1 plus 1 ?"}\n')
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "name: nightly\n"
        "models: {base: ./base, sft: [base], reward: org/hub-reward, prompts: prompts.jsonl}\n"
        "search: {alpha: [0.0, 0.9], n_trials: 8, seed_points: [paper, baselines]}\n"
        "probe: {steps: 3, batch_size: 4}\n"
        "benchmarks: {limit: 10}\n"
    )
    spec = SweepSpec.from_file(path)
    assert spec.models.base == str(tmp_path / "base")
    assert spec.models.sft == [str(tmp_path / "base")]
    assert spec.models.prompts == str(tmp_path / "prompts.jsonl")
    assert spec.models.reward == "org/hub-reward"  # not a local path: kept (a hub id)
    assert spec.probe.steps == 3 and spec.benchmarks.limit == 10


def test_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"name": "j", "models": MODELS}))
    assert SweepSpec.from_file(path).name == "j"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "name: [unclosed\n", r"invalid YAML at line \d+ column \d+"),
        ("bad.json", '{"name": ', r"invalid JSON at line 1 column"),
        ("list.yaml", "- a\n- b\n", "must be a mapping, got list"),
        ("empty.yaml", "", "must be a mapping, got NoneType"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidSpecError, match=message):
        SweepSpec.from_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="cannot read sweep spec"):
        SweepSpec.from_file(tmp_path / "nope.yaml")


def test_example_spec_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "demo-sweep.yaml"
    spec = SweepSpec.from_file(example)
    assert spec.name == "demo-sweep"
    # Neither its full probe nor its rung 0 is too short for the stability window.
    assert spec.short_window_warnings() == []


def test_probes_under_two_stability_windows_are_warned_about_rung_0_too() -> None:
    assert _spec(probe={"steps": 8}).short_window_warnings() == []
    (full,) = _spec(probe={"steps": 5}).short_window_warnings()
    assert full.startswith("probe.steps (5) is under two stability windows")
    halving = {"enabled": True, "rungs": 2, "eta": 4, "min_steps": 2}
    (rung,) = _spec(probe={"steps": 8}, fidelity=halving).short_window_warnings()
    assert rung.startswith("fidelity: rung 0 probes 2 updates, under two stability windows")
    assert "raise fidelity.min_steps to 6" in rung
    assert (
        _spec(probe={"steps": 8}, fidelity={**halving, "min_steps": 6}).short_window_warnings()
        == []
    )
    wide = _spec(probe={"steps": 8, "stability_window": 1}, fidelity=halving)
    assert wide.short_window_warnings() == []
    # A full probe already warned about: its lowest rung is not warned about twice.
    assert (
        len(_spec(probe={"steps": 5}, fidelity={**halving, "min_steps": 2}).short_window_warnings())
        == 1
    )


def test_example_spec_is_the_demo_sweep() -> None:
    import yaml

    from service.cli._demo_sweep import DEMO_SWEEP

    example = Path(__file__).resolve().parents[2] / "examples" / "demo-sweep.yaml"
    data = yaml.safe_load(example.read_text())
    data.pop("models")
    assert data == DEMO_SWEEP
