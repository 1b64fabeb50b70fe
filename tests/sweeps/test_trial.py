"""One real trial on the demo world with repeats: per-seed values, intervals, the parents'
reference length, the benchmark of the trained policy, forgetting and correctness retention."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from sweeps.search_space import Candidate
from sweeps.spec import SweepSpec
from sweeps.trial import (
    clear_trial_inputs,
    load_trial_inputs,
    model_reference_length,
    parents_reference_length,
    run_trial,
)
from tests.sweeps.conftest import write_demo_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def repeated_spec(demo_world: Any, tmp_path: Path) -> SweepSpec:
    path = write_demo_spec(
        demo_world,
        tmp_path / "spec.yaml",
        name="repeats",
        probe={"repeats": 2, "steps": 3},
        objectives=["stability", "benchmark", "benchmark_after", "forgetting"],
    )
    clear_trial_inputs()
    yield SweepSpec.from_file(path)
    clear_trial_inputs()


def test_a_trial_probes_every_seed_and_reports_means_with_intervals(
    repeated_spec: SweepSpec,
) -> None:
    inputs = load_trial_inputs(repeated_spec)
    # The reasoning parent's greedy length is the reference: longer than the base's answers.
    assert inputs.reference_length is not None and inputs.reference_length > 1
    streamed: list[Any] = []
    outcome = run_trial(
        repeated_spec, Candidate((0.5, 0.5), 0.5), inputs=inputs, on_step=streamed.append
    )
    stats = outcome.stability["objective_stats"]
    seeds = outcome.stability["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1]
    assert {s["reference_length"] for s in seeds} == {inputs.reference_length}
    for name, value in outcome.objectives.items():
        values = stats[name]["values"]
        assert len(values) == 2 and value == pytest.approx(sum(values) / 2)
        assert stats[name]["n"] == 2
        assert stats[name]["low"] <= value <= stats[name]["high"]
    assert stats["stability"]["values"] == [s["stability"] for s in seeds]
    # The initial actor is the same for every seed: its spread is lm-eval's error alone.
    init_se = outcome.benchmarks["benchmark_stderr"]
    assert init_se is not None and init_se >= 0
    assert stats["benchmark"]["values"][0] == stats["benchmark"]["values"][1]
    assert stats["benchmark"]["sem"] == pytest.approx(init_se)
    after = outcome.benchmarks["after"]
    assert [a["seed"] for a in after] == [0, 1]
    assert stats["benchmark_after"]["values"] == [a["benchmark"] for a in after]
    assert all(math.isfinite(a["benchmark_stderr"]) for a in after)
    # Only the first seed streams its curve; 3 steps are under two windows: warned.
    assert [step.step for step in streamed] == [1, 2, 3]
    assert outcome.probe["repeats"] == 2 and len(outcome.probe["seeds"]) == 2
    assert "probe.steps (3)" in outcome.stability["warnings"][0]
    # Forgetting: the score drop versus the base (scored once, with the inputs) on bai_facts_mc.
    assert inputs.base_benchmark is not None
    benchmarks = outcome.benchmarks
    base = inputs.base_benchmark.per_task["bai_facts_mc"].score
    assert benchmarks["retention_tasks"] == ["bai_facts_mc"]
    assert benchmarks["base"]["bai_facts_mc"] == base
    assert benchmarks["forgetting_init"] == pytest.approx(
        base - benchmarks["selection"]["bai_facts_mc"]
    )
    for run in after:
        assert run["forgetting"] == pytest.approx(base - run["selection"]["bai_facts_mc"])
    assert stats["forgetting"]["values"] == [a["forgetting"] for a in after]
    # Correctness retention: the demo world's probe prompts all have known answers.
    for seed in seeds:
        assert 0.0 <= seed["correctness_retention"] <= 1.0
        assert 0.0 <= seed["correct_start"] <= 1.0 and 0.0 <= seed["correct_end"] <= 1.0
    assert outcome.stability["correctness_retention"] == pytest.approx(
        sum(s["correctness_retention"] for s in seeds) / 2
    )
    # Reward forecast: 3 steps are too few to fit, and each seed says so.
    forecast = outcome.stability["reward_forecast"]
    assert (forecast["seeds_fitted"], forecast["seeds"], forecast["asymptote"]) == (0, 2, None)
    for seed in seeds:
        assert seed["reward_forecast"]["asymptote"] is None
        assert seed["reward_forecast"]["reason"] == "too few finite steps to fit (3 < 6)"
        # Refused fits fall back to the observed last-window mean (what a forecast objective
        # would take), the length's at the default horizon of 6 x 3 updates.
        assert seed["reward_forecast"]["fallback"] is True
        length = seed["length_forecast"]
        assert (length["horizon"], length["fallback"], length["at_horizon"]) == (18, True, None)
        assert length["value"] == length["observed"] and 0 < length["observed"] <= 24
    assert seeds[0]["length_forecast"]["observed"] == pytest.approx(
        sum(step.length_mean for step in streamed) / 3
    )
    combined = outcome.stability["length_forecast"]
    assert (combined["seeds_fitted"], combined["fallback"], combined["horizon"]) == (0, True, 18)


def test_a_reference_model_gives_the_reference_length(demo_world: Any, tmp_path: Path) -> None:
    reasoning = str(demo_world.sfts[-1])
    path = write_demo_spec(
        demo_world,
        tmp_path / "spec.yaml",
        name="reference-model",
        probe={"length_reference": reasoning},
        benchmarks={"retention": []},
    )
    spec = SweepSpec.from_file(path)
    clear_trial_inputs()
    try:
        inputs = load_trial_inputs(spec)
        assert inputs.base_benchmark is None  # no retention task: the base is not scored
        measured = model_reference_length(spec, reasoning, inputs.prompts, device="cpu")
        assert inputs.reference_length == measured
        # The reasoning model is the longest parent: the same length as the parents' reference.
        parents = parents_reference_length(
            spec, inputs.merge_inputs, inputs.tokenizer, inputs.prompts
        )
        assert measured == pytest.approx(parents)
    finally:
        clear_trial_inputs()
