"""What ``bai-sweep run`` and ``bai-sweep demo`` print when a sweep ends (``print_summary``).

The report is built from hand-made trial records (the fixtures of
``tests/sweeps/test_reports.py``); the real command's output is checked by
``tests/sweeps/test_nightly.py::test_real_single_candidate_within_noise_is_not_a_regression``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.cli._sweep_session import SessionResult, print_summary
from storage.lease import RunEnd
from sweeps.reports import TrialRecord, build_report
from sweeps.runner import SweepOutcome
from tests.sweeps.test_reports import NOISY, _noisy_data, _repeated


def _result(
    tmp_path: Path, *, rung: bool, trials: tuple[TrialRecord, ...] = NOISY
) -> SessionResult:
    trials = tuple(
        dataclasses.replace(t, fidelity={"rung": 1, "steps": 8, "repeats": 2}) if rung else t
        for t in trials
    )
    data = _noisy_data(*trials)
    report = build_report(data)
    outcome = SweepOutcome(
        sweep_id="n1",
        status=RunEnd.SUCCEEDED,
        n_trials=len(trials),
        finished=len(trials),
        complete=len(trials),
        failed=0,
        pruned=0,
        front=[t.number for t in report.front],
        hypervolume=report.hypervolume,
        error=None,
        trials_run=len(trials),
        wall_time_s=1.0,
    )
    return SessionResult(outcome=outcome, data=data, report=report, directory=tmp_path)


@pytest.mark.parametrize("rung", [False, True])
def test_the_summary_shows_every_objective_and_the_recommendation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, rung: bool
) -> None:
    from rich.console import Console

    # A wide terminal, so that no column of the front table is folded.
    monkeypatch.setattr("service.cli._sweep_session.console", Console(width=200))
    print_summary(_result(tmp_path, rung=rung))
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "trial" in line and "alpha" in line)
    # Every objective has its column, with or without the rung column of successive halving.
    for column in ("stability", "benchmark", *(["rung"] if rung else [])):
        assert column in header
    assert "recommendation (the rule is in the report):" in out
    assert "- use #3 w=(0.50, 0.50) a=0.30" in out and "- runner-up: #0" in out
    assert "**" not in out and "- rule:" not in out
    assert f"report: {tmp_path / 'report.md'}" in out


def test_the_front_table_fits_an_80_column_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    # What a nightly job's log gets: not a terminal, so rich's default 80 columns.
    monkeypatch.setattr("service.cli._sweep_session.console", Console(width=80))
    # The demo's front as it prints (its widest cells): two baselines with intervals, one of
    # them clipped at the top of stability's range.
    reasoning = _repeated(9, 0.8203, 0.7188, 0.1094)
    stats = reasoning.stability["objective_stats"]
    stats["stability"] = {**stats["stability"], "low": 0.609, "high": 1.0}
    demo_front = tuple(
        dataclasses.replace(t, weights=w, alpha=0.0, seed_kind="baseline")
        for t, w in ((reasoning, (0.0, 1.0)), (_repeated(8, 0.2949, 0.8125, 0.0592), (1.0, 0.0)))
    )
    result = _result(tmp_path, rung=True, trials=demo_front)
    print_summary(result)
    out = capsys.readouterr().out
    assert "…" not in out  # no cell or header was cut to fit
    assert "0.8203 [0.609, 1]" in out
    header, rows = result.report.front_table()
    for cell in (*header[:7], *(c for row in rows for c in row[:7])):
        assert cell in out
