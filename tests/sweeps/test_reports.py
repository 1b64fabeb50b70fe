"""Reports: front, hypervolume history, Markdown/JSON/HTML and real PNG figures."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sweeps.reports import (
    ObjectiveInfo,
    SweepReportData,
    TrialRecord,
    build_report,
    trial_curves_figure,
)

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
    for name in ("pareto.png", "hypervolume.png", "curves.png"):
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
    assert page.count("data:image/png;base64,") == 3
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
