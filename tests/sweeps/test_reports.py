"""Reports: front, hypervolume history, Markdown/JSON/HTML and real PNG figures."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sweeps.reports import (
    FIGURE_NAMES,
    ObjectiveInfo,
    SweepReportData,
    TrialRecord,
    build_report,
    front_statistics,
    objectives_by_ratio_figure,
    ratio_map_figure,
    trial_curves_figure,
)
from sweeps.results import collapse_threshold_of
from sweeps.statistics import mean_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def _steps(start_length: float, slope: float) -> list[dict[str, float]]:
    return [
        {"step": s, "length_mean": start_length + slope * s, "reward_mean": 0.1 * s, "kl": 0.01 * s}
        for s in range(4)
    ]


def _data() -> SweepReportData:
    objectives = [
        ObjectiveInfo("stability", "maximize", 0.0),
        ObjectiveInfo("benchmark", "maximize", 0.0),
    ]
    trials = [
        TrialRecord(
            0,
            (1.0, 0.0),
            0.0,
            "complete",
            "baseline",
            {"stability": 0.2, "benchmark": 0.6},
            {"stability": 0.2, "length_retention": 0.4},
            steps=_steps(20, -3),
            finished_at=T0 + timedelta(minutes=1),
        ),
        TrialRecord(
            1,
            (0.0, 1.0),
            0.0,
            "complete",
            "baseline",
            {"stability": 0.3, "benchmark": 0.3},
            {"stability": 0.3, "kl_final": 0.3},
            steps=_steps(40, -5),
            finished_at=T0 + timedelta(minutes=2),
        ),
        TrialRecord(
            2,
            (0.5, 0.5),
            0.5,
            "complete",
            "paper",
            {"stability": 0.8, "benchmark": 0.4},
            {"stability": 0.8, "length_retention": 1.1},
            steps=_steps(30, 2),
            finished_at=T0 + timedelta(minutes=4),
        ),
        TrialRecord(
            3,
            (0.3, 0.7),
            0.2,
            "failed",
            None,
            None,
            error="NaN loss at step 2",
            finished_at=T0 + timedelta(minutes=3),
        ),
        TrialRecord(
            4,
            (0.6, 0.4),
            0.3,
            "complete",
            None,
            {"stability": 0.5, "benchmark": 0.5},
            steps=_steps(25, 0),
            finished_at=T0 + timedelta(minutes=5),
        ),
        TrialRecord(
            5,
            (0.6, 0.4),
            0.9,
            "complete",
            None,
            {"stability": math.nan, "benchmark": 0.1},
            finished_at=T0 + timedelta(minutes=6),
        ),
    ]
    return SweepReportData("abc123", "unit", "succeeded", objectives, trials, n_trials=6)


def test_front_and_hypervolume_by_hand() -> None:
    data = _data()
    # Front: #2 (0.8, 0.4), #4 (0.5, 0.5), #0 (0.2, 0.6); #1 is dominated by #4; #5 has a NaN.
    assert [t.number for t in data.front()] == [2, 4, 0]
    # Staircase against (0, 0): 0.2*0.6 + 0.3*0.5 + 0.3*0.4 = 0.12 + 0.15 + 0.12.
    assert data.hypervolume() == pytest.approx(0.39)
    assert data.best_values() == {"stability": 0.8, "benchmark": 0.6}


def test_hypervolume_history_follows_finishing_order() -> None:
    history = _data().hypervolume_history()
    assert [n for n, _ in history] == [1, 2, 3, 4, 5, 6]
    values = [hv for _, hv in history]
    assert values[0] == pytest.approx(0.12)  # #0 alone
    assert values[1] == pytest.approx(0.12 + 0.1 * 0.3)  # + #1
    assert values[2] == values[1]  # the failed #3 adds nothing
    assert values[-1] == pytest.approx(0.39)
    assert values == sorted(values)


def test_report_files(tmp_path: Path) -> None:
    report = build_report(_data())
    out = report.write(tmp_path / "report")
    for name in FIGURE_NAMES:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
        assert len((out / name).read_bytes()) > 5000
    payload = json.loads((out / "report.json").read_text())
    assert payload["hypervolume"] == pytest.approx(0.39)
    assert [m["number"] for m in payload["front"]] == [2, 4, 0]
    assert payload["counts"] == {"complete": 5, "failed": 1}
    assert payload["trials"][5]["objectives"]["stability"] is None  # NaN is not valid JSON
    markdown = (out / "report.md").read_text()
    assert "| #2 | paper | (0.500, 0.500) | 0.500 | 0.8 | 0.4 | 1.1 |" in markdown
    assert "![Trials and Pareto front](pareto.png)" in markdown
    assert "#3 w=(0.30, 0.70) a=0.20: failed — NaN loss at step 2" in markdown


def test_front_table_columns() -> None:
    header, rows = build_report(_data()).front_table()
    assert header == [
        "trial",
        "kind",
        "weights",
        "alpha",
        "stability",
        "benchmark",
        "length_retention",
    ]
    assert rows[1][:2] == ["#4", "sampled"]
    assert rows[1][-1] == "–"


def test_html_is_self_contained() -> None:
    page = build_report(_data()).to_html()
    assert page.count("data:image/png;base64,") == 5
    assert "<td>#2</td>" in page


def test_empty_sweep_still_renders(tmp_path: Path) -> None:
    data = SweepReportData(
        "e",
        "empty <b>",
        "failed",
        [ObjectiveInfo("benchmark", "maximize", 0.0)],
        [],
        n_trials=3,
        error="merge failed",
    )
    report = build_report(data)
    assert report.front == [] and report.hypervolume == 0.0
    report.write(tmp_path)
    assert "front is empty" in (tmp_path / "report.md").read_text()
    assert "empty &lt;b&gt;" in report.to_html()


def test_trial_curve_png() -> None:
    trial = _data().trials[2]
    assert trial_curves_figure(trial).startswith(PNG_MAGIC)


def _repeated(
    number: int, stability: float, benchmark: float, half: float, **flags: bool
) -> TrialRecord:
    def stats(mean: float) -> dict[str, object]:
        return {
            "mean": mean,
            "low": mean - half,
            "high": mean + half,
            "sem": half / 2,
            "n": 2,
            "values": [mean - half / 4, mean + half / 4],
        }

    return TrialRecord(
        number,
        (0.5, 0.5),
        0.1 * number,
        "complete",
        None,
        {"stability": stability, "benchmark": benchmark},
        {
            "stability": stability,
            "collapsed": False,
            **flags,
            "objective_stats": {"stability": stats(stability), "benchmark": stats(benchmark)},
        },
    )


def _noisy_data(*trials: TrialRecord) -> SweepReportData:
    objectives = [
        ObjectiveInfo("stability", "maximize", 0.0),
        ObjectiveInfo("benchmark", "maximize", 0.0),
    ]
    return SweepReportData("n1", "noisy", "succeeded", objectives, list(trials), len(trials))


NOISY = (
    _repeated(0, 0.90, 0.40, 0.02),  # front
    _repeated(1, 0.50, 0.70, 0.02, collapsed=True),  # front, but collapsed
    _repeated(2, 0.85, 0.38, 0.10),  # below #0 on the means, overlapping: tied
    _repeated(3, 0.60, 0.55, 0.02),  # front
    _repeated(4, 0.30, 0.20, 0.01),  # clearly dominated
)


def test_tied_set_and_recommendation_rule() -> None:
    data = _noisy_data(*NOISY)
    assert [t.number for t in data.front()] == [0, 3, 1]
    assert [t.number for t in data.tied()] == [2]
    chosen = data.recommendation()
    # Pool {0, 2, 3} (#1 collapsed); best mean benchmark: #3, then #0.
    assert chosen is not None and chosen.ranked_by == "benchmark"
    assert (chosen.trial.number, chosen.runner_up.number) == (3, 0)


def test_recommendation_breaks_benchmark_ties_by_stability_and_needs_a_stable_trial() -> None:
    data = _noisy_data(_repeated(5, 0.6, 0.5, 0.2), _repeated(6, 0.7, 0.5, 0.2))
    chosen = data.recommendation()
    assert chosen is not None and (chosen.trial.number, chosen.runner_up.number) == (6, 5)
    unstable = _noisy_data(_repeated(7, 0.6, 0.5, 0.2, diverged=True))
    assert unstable.recommendation() is None
    assert "No recommendation" in build_report(unstable).to_markdown()


def _seeds(*retentions: float | None, threshold: float = 0.5) -> dict[str, object]:
    """Per-seed stability records: each seed's length retention (None: it diverged)."""
    records = [
        {
            "seed": k,
            "length_retention": 0.0 if r is None else r,
            "collapsed": r is not None and r < threshold,
            "diverged": r is None,
        }
        for k, r in enumerate(retentions)
    ]
    return {
        "collapsed": any(s["collapsed"] for s in records),
        "diverged": any(s["diverged"] for s in records),
        "seeds": records,
    }


def _gated(number: int, benchmark: float, *retentions: float | None) -> TrialRecord:
    """A trial on the front of :func:`_noisy_data`: the higher its benchmark, the less stable."""
    trial = _repeated(number, 1.0 - benchmark, benchmark, 0.01)
    return replace(trial, stability={**(trial.stability or {}), **_seeds(*retentions)})


@pytest.mark.parametrize(
    ("retentions", "low", "collapsed", "kept"),
    [
        # mean 0.96, s 0.04: 0.96 - t(0.975, 2) 4.303 x 0.04 / sqrt(3) = 0.8606
        ((0.92, 0.96, 1.0), 0.8606, 0, True),
        # No seed collapsed, but the mean 0.5367 (s 0.0208) is not shown above 0.5: 0.4850
        ((0.56, 0.53, 0.52), 0.4850, 0, False),
        ((0.45, 0.9, 0.95), None, 1, False),  # any seed collapsed at 3 seeds: the low end is lower
        ((1.0, 1.0, 1.0), 1.0, 0, True),  # no spread: the mean
        ((0.6,), None, 0, True),  # one seed: its retention
        ((0.4,), None, 1, False),
        ((0.9, None, 0.9), None, 0, False),  # a seed diverged
        # 1 of 10 collapsed, the mean 0.855 (s 0.1423) shown above: 0.855 - 2.262 x 0.045 = 0.7532
        ((0.9,) * 9 + (0.45,), 0.7532, 1, True),
    ],
)
def test_the_recommendation_gate_keeps_a_trial_whose_seeds_show_it_keeps_its_length(
    retentions: tuple[float | None, ...], low: float | None, collapsed: int, kept: bool
) -> None:
    risky, safe = _gated(1, 0.7, *retentions), _gated(0, 0.4, 1.0, 1.0, 1.0)
    assert risky.keeps_length(0.5) is kept
    assert risky.collapsed_seeds() == (
        collapsed + sum(r is None for r in retentions),
        len(retentions),
    )
    interval = risky.retention_interval()
    if low is not None:
        assert interval is not None and interval.low == pytest.approx(low, abs=1e-4)
    data = _noisy_data(safe, risky)
    chosen = data.recommendation()
    assert chosen is not None and chosen.trial.number == (1 if kept else 0)
    assert data.gated_out() == ([] if kept else [risky])


def test_the_gate_uses_the_sweeps_collapse_threshold() -> None:
    trial = _gated(1, 0.7, 0.92, 0.96, 1.0)  # low end 0.8606
    assert trial.keeps_length(0.85) and not trial.keeps_length(0.87)
    data = replace(_noisy_data(trial), collapse_threshold=0.87)
    assert data.recommendation() is None
    report = build_report(data)
    assert "collapse threshold 0.87" in report.to_markdown()
    # No recommendation, but the ratio the gate dropped is still named.
    assert report.to_json()["recommendation"] is None
    assert [t["trial_number"] for t in report.to_json()["gated_out"]] == [1]
    assert [t["trial_number"] for t in front_statistics(data)["gated_out"]] == [1]


def test_the_collapse_threshold_comes_from_the_stored_spec() -> None:
    assert collapse_threshold_of({"probe": {"collapse_threshold": 0.3}}) == 0.3
    assert collapse_threshold_of({"probe": {}}) == collapse_threshold_of({}) == 0.5


def test_a_trial_without_per_seed_records_is_gated_by_its_flags() -> None:
    legacy = _repeated(0, 0.5, 0.5, 0.01, collapsed=True)
    assert legacy.collapsed_seeds() == (1, 1) and not legacy.keeps_length()
    assert _repeated(1, 0.5, 0.5, 0.01).keeps_length()


def test_the_recommendation_shows_its_length_retention_and_collapsed_seeds() -> None:
    data = _noisy_data(
        _gated(1, 0.7, *(0.9,) * 9, 0.45),
        _gated(0, 0.4, 1.0, 1.0, 1.0),
        _gated(2, 0.8, 0.56, 0.53, 0.52),  # the best benchmark, at the threshold: gated out
    )
    report = build_report(data)
    body = report.to_json()
    picked = body["recommendation"]
    assert picked["trial_number"] == 1
    assert [t["trial_number"] for t in body["gated_out"]] == [2]
    assert body["gated_out"][0]["length_retention"]["low"] == pytest.approx(0.4850, abs=1e-4)
    stats = front_statistics(data)
    assert stats["recommendation"] == picked and stats["gated_out"] == body["gated_out"]
    assert "not recommended, its seeds do not show it keeps its length (threshold 0.5): #2" in (
        report.to_markdown()
    )
    assert (picked["collapsed_seeds"], picked["seeds"]) == (1, 10)
    assert picked["length_retention"]["low"] == pytest.approx(0.7532, abs=1e-4)
    assert (picked["runner_up"]["collapsed_seeds"], picked["runner_up"]["seeds"]) == (0, 3)
    assert "length retention 0.855 ± 0.1, collapsed on 1 of 10 seeds" in report.to_markdown()
    assert "95% interval of the mean length retention" in picked["rule"]


def test_recommendation_prefers_the_benchmark_after_rl() -> None:
    objectives = [
        ObjectiveInfo("benchmark", "maximize", 0.0),
        ObjectiveInfo("benchmark_after", "maximize", 0.0),
    ]
    trials = [
        TrialRecord(0, (1.0,), 0.1, "complete", None, {"benchmark": 0.9, "benchmark_after": 0.2}),
        TrialRecord(1, (1.0,), 0.2, "complete", None, {"benchmark": 0.5, "benchmark_after": 0.6}),
    ]
    chosen = SweepReportData("b", "after", "succeeded", objectives, trials, 2).recommendation()
    assert chosen is not None and chosen.ranked_by == "benchmark_after"
    assert (chosen.trial.number, chosen.runner_up.number) == (1, 0)


def test_report_shows_intervals_tied_set_and_recommendation() -> None:
    report = build_report(_noisy_data(*NOISY))
    body = report.to_json()
    assert body["tied"] == [2]
    recommended = body["recommendation"]
    assert (recommended["trial_number"], recommended["runner_up"]["trial_number"]) == (3, 0)
    assert recommended["objectives"]["benchmark"]["low"] == pytest.approx(0.53)
    assert "best mean benchmark" in recommended["rule"]
    interval = body["hypervolume_interval"]
    assert interval["low"] <= body["hypervolume"] <= interval["high"]
    markdown = report.to_markdown()
    assert "- **use #3 w=(0.50, 0.50) a=0.30 (sampled): stability 0.6 ± 0.02" in markdown
    assert "Statistically tied with the front (intervals overlap): #2" in markdown
    assert "0.9 ± 0.02" in markdown and "95% bootstrap interval" in markdown
    assert "Recommendation" in report.to_html()
    terminal = report.recommendation_lines(rule=False)  # what bai-sweep run prints
    assert terminal[0].startswith("- **use #3 w=(0.50, 0.50) a=0.30")
    assert terminal[1].startswith("- runner-up: #0")
    assert not any(line.startswith("- rule:") for line in terminal)
    stats = front_statistics(_noisy_data(*NOISY))
    assert stats["tied"] == [2] and stats["recommendation"] == recommended
    assert stats["hypervolume_interval"] == interval and stats["infeasible"] == []


def test_ratio_map_colours_by_any_objective(tmp_path: Path) -> None:
    data = _data()
    report = build_report(data)
    assert "![Ratio map: every candidate's alpha and w_1](ratio_map.png)" in report.to_markdown()
    by_benchmark = ratio_map_figure(data, data.front(), "benchmark", chosen=data.recommendation())
    assert by_benchmark.startswith(PNG_MAGIC) and by_benchmark != report.figures["ratio_map.png"]
    with pytest.raises(ValueError, match="no objective 'kl'"):
        ratio_map_figure(data, data.front(), "kl", chosen=None)
    empty = SweepReportData("e", "empty", "running", data.objectives, [], n_trials=2)
    assert ratio_map_figure(empty, [], chosen=None).startswith(PNG_MAGIC)
    assert objectives_by_ratio_figure(empty, []).startswith(PNG_MAGIC)
    assert "objectives_by_ratio.png" in report.to_markdown()


def test_front_table_shows_the_reward_forecast_and_clipped_intervals() -> None:
    clipped = mean_interval([0.95, 1.0], bounds=(0.0, 1.0))  # [0.657, 1]
    forecast = mean_interval([0.8, 0.9])
    trial = TrialRecord(
        0,
        (0.5, 0.5),
        0.2,
        "complete",
        None,
        {"stability": 0.975, "benchmark": 0.5},
        {
            "stability": 0.975,
            "objective_stats": {
                "stability": clipped.to_json(),
                "benchmark": mean_interval([0.5, 0.5]).to_json(),
            },
            "reward_forecast": {"asymptote": forecast.to_json(), "seeds_fitted": 2, "seeds": 2},
        },
    )
    header, rows = build_report(_noisy_data(trial)).front_table()
    assert header[-1] == "reward_asymptote"
    assert rows[0][header.index("stability")] == "0.975 [0.657, 1]"
    assert rows[0][-1] == "0.85 ± 0.64"  # t(1) x sem 0.05
    without = build_report(_noisy_data(_repeated(0, 0.9, 0.4, 0.02))).front_table()[0]
    assert "reward_asymptote" not in without


def _forecast_trial(number: int, length: float, fitted: int) -> TrialRecord:
    """A trial with ``length_at_horizon`` an objective, ``fitted`` of its 2 seeds fitted."""
    stats = {
        **mean_interval([length - 1, length + 1]).to_json(),
        "values": [length - 1, length + 1],
    }
    reasons = ["flat length: nothing to fit"] * (2 - fitted)
    stability = 0.5 + 0.1 * number
    return TrialRecord(
        number=number,
        weights=(0.5, 0.5),
        alpha=0.1 * number,
        state="complete",
        objectives={"stability": stability, "length_at_horizon": length},
        stability={
            "stability": stability,
            "objective_stats": {
                "stability": mean_interval([stability] * 2).to_json(),
                "length_at_horizon": stats,
            },
            "reward_forecast": {"asymptote": None, "seeds_fitted": 0, "seeds": 2, "reasons": []},
            "length_forecast": {
                "at_horizon": stats if fitted else None,
                "seeds_fitted": fitted,
                "seeds": 2,
                "fallback": fitted < 2,
                "reasons": reasons,
                "horizon": 48,
            },
        },
    )


def test_a_forecast_objective_says_when_its_seeds_fell_back() -> None:
    objectives = [
        ObjectiveInfo("stability", "maximize", 0.0),
        ObjectiveInfo("length_at_horizon", "maximize", 0.0),
    ]
    trials = [_forecast_trial(0, 60.0, fitted=1), _forecast_trial(1, 40.0, fitted=2)]
    data = SweepReportData("f1", "forecast", "succeeded", objectives, trials, 2)
    report = build_report(data)
    header, rows = report.front_table()
    # The objective's own column, no separate forecast column.
    assert header.count("length_at_horizon") == 1 and "reward_asymptote" not in header
    by_trial = {row[0]: row[header.index("length_at_horizon")] for row in rows}
    assert by_trial == {"#0": "60 ± 13 (fallback 1/2)", "#1": "40 ± 13"}
    markdown = report.to_markdown()
    assert "length_at_horizon (objective): each seed's forecast" in markdown
    # #1 is recommended (best stability), #0 the runner-up: its line says it fell back too.
    runner_up = next(line for line in markdown.splitlines() if line.startswith("- runner-up"))
    assert runner_up.endswith("length_at_horizon 60 ± 13 (fallback 1/2)")
    json_trials = {t["number"]: t for t in report.to_json()["trials"]}
    assert json_trials[0]["forecasts"]["length_at_horizon"] == {
        "seeds_fitted": 1,
        "seeds": 2,
        "fallback": True,
        "reasons": ["flat length: nothing to fit"],
        "horizon": 48,
    }
    assert json_trials[1]["length_forecast"]["horizon"] == 48
    recommended = front_statistics(data)["recommendation"]
    assert recommended["forecasts"]["length_at_horizon"]["seeds"] == 2


def test_the_length_forecast_column_when_it_is_not_an_objective() -> None:
    def table(trial: TrialRecord) -> tuple[list[str], list[list[str]]]:
        objectives = [ObjectiveInfo("stability", "maximize", 0.0)]
        data = SweepReportData("f2", "forecast", "succeeded", objectives, [trial], 1)
        return build_report(data).front_table()

    header, rows = table(_forecast_trial(0, 60.0, fitted=2))
    assert header[-1] == "length_at_horizon"
    assert rows[0][-1] == "60 ± 13"
    assert "length_at_horizon" not in table(_forecast_trial(0, 60.0, fitted=0))[0]
