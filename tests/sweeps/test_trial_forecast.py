"""A real trial (in-memory merge -> PPO probe -> lm-eval) on tiny models with both forecast
objectives: every value comes from the seeds' probe curves, fitted or observed.

The probe penalises responses that never end (``missing_eos_penalty``) at a learning rate
high enough for the tiny actor to learn to stop within 10 updates: its length curve falls and
bends, so a fit has something to fit (on this machine every seed's length is fitted)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sweeps.forecast import forecasts_of
from sweeps.search_space import Candidate
from sweeps.spec import SweepSpec
from sweeps.trial import clear_trial_inputs, run_trial
from tests.sweeps._report_support import one_trial_report
from tests.tiny_models import (
    TINY_BENCHMARKS,
    make_family,
    make_reward_model,
    write_arith_prompts,
)

pytestmark = pytest.mark.slow

STEPS, HORIZON, WINDOW, MAX_LENGTH = 10, 60, 2, 16


@pytest.fixture
def forecast_spec(tmp_path: Path) -> SweepSpec:
    base, sfts = make_family(tmp_path / "models", n_sft=2, dtype=torch.float32)
    reward = make_reward_model(tmp_path / "models" / "reward")
    prompts = write_arith_prompts(tmp_path / "prompts.jsonl", 8)
    data = {
        "name": "forecast",
        "models": {
            "base": str(base),
            "sft": [str(p) for p in sfts],
            "reward": str(reward),
            "prompts": str(prompts),
        },
        "search": {"n_trials": 1, "seed_points": "none"},
        "objectives": ["stability", "reward_asymptote", "length_at_horizon"],
        "probe": {
            "steps": STEPS,
            "repeats": 2,
            "batch_size": 8,
            "response_length": MAX_LENGTH,
            "stability_window": WINDOW,
            "forecast_horizon": HORIZON,
            "learning_rate": 3e-3,
            "missing_eos_penalty": 1.0,
            "early_stop": False,
            "device": "cpu",
        },
        "benchmarks": TINY_BENCHMARKS,
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    clear_trial_inputs()
    yield SweepSpec.from_file(tmp_path / "spec.yaml")
    clear_trial_inputs()


def _observed(curve: list[float]) -> float:
    return statistics.fmean(curve[-WINDOW:])


def test_forecast_objectives_come_from_the_probe_curves(forecast_spec: SweepSpec) -> None:
    streamed: list[Any] = []
    outcome = run_trial(forecast_spec, Candidate((0.5, 0.5), 0.3), on_step=streamed.append)
    stats = outcome.stability["objective_stats"]
    seeds = outcome.stability["seeds"]
    assert len(seeds) == 2 and len(streamed) == STEPS
    for objective, record, forecast_key, metric in (
        ("reward_asymptote", "reward_forecast", "asymptote", "reward_mean"),
        ("length_at_horizon", "length_forecast", "at_horizon", "length_mean"),
    ):
        per_seed = [seed[record] for seed in seeds]
        for forecast in per_seed:
            assert forecast["steps"] == STEPS
            # The fitted forecast, or the observed last-window mean when the fit was refused.
            if forecast["fallback"]:
                assert forecast[forecast_key] is None and forecast["reason"]
                assert forecast["value"] == forecast["observed"]
            else:
                assert forecast["reason"] is None
                assert forecast["value"] == forecast[forecast_key]
        # The first seed's curve is the streamed one: its observed value is its last window.
        assert per_seed[0]["observed"] == pytest.approx(
            _observed([getattr(step, metric) for step in streamed])
        )
        assert stats[objective]["values"] == [f["value"] for f in per_seed]
        assert outcome.objectives[objective] == pytest.approx(
            statistics.fmean(f["value"] for f in per_seed)
        )
        combined = outcome.stability[record]
        fitted = sum(not f["fallback"] for f in per_seed)
        assert (combined["seeds_fitted"], combined["seeds"]) == (fitted, 2)
        assert combined["fallback"] is (fitted < 2)
        assert forecasts_of(outcome.stability)[objective]["fallback"] is (fitted < 2)
    length = outcome.stability["length_forecast"]
    assert length["horizon"] == HORIZON
    assert all(seed["length_forecast"]["horizon"] == HORIZON for seed in seeds)
    # Lengths are token counts up to the probe's response_length.
    assert 0 < outcome.objectives["length_at_horizon"] <= MAX_LENGTH
    # A real fit happened: the falling length bent within the probe.
    assert length["seeds_fitted"] >= 1
    fitted = [s["length_forecast"] for s in seeds if not s["length_forecast"]["fallback"]]
    for forecast in fitted:
        assert forecast["at_horizon_se"] is not None and forecast["at_horizon_se"] >= 0
        assert forecast["at_horizon"] < forecast["start"]

    # The report shows the objectives and says which fell back.
    report = one_trial_report("forecast", outcome, 0.3, stability=outcome.stability)
    header, rows = report.front_table()
    cell = rows[0][header.index("length_at_horizon")]
    fell_back = length["seeds"] - length["seeds_fitted"]
    assert cell.endswith(f"(fallback {fell_back}/2)") if fell_back else "fallback" not in cell
    assert report.to_json()["trials"][0]["forecasts"] == forecasts_of(outcome.stability)
