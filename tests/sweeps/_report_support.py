"""Reports of one real trial, for tests that check what a trial's outcome shows in a report."""

from __future__ import annotations

from typing import Any

from sweeps.reports import ObjectiveInfo, Report, SweepReportData, TrialRecord, build_report
from sweeps.trial import TrialOutcome


def one_trial_report(name: str, outcome: TrialOutcome, alpha: float, **recorded: Any) -> Report:
    """The report of a succeeded sweep whose one trial is ``outcome`` at w = (0.5, 0.5), every
    objective maximised with reference 0; ``recorded``: the trial record's other fields the test
    looks at (``stability``, ``benchmarks``)."""
    record = TrialRecord(
        number=0,
        weights=(0.5, 0.5),
        alpha=alpha,
        state="complete",
        objectives=dict(outcome.objectives),
        **recorded,
    )
    data = SweepReportData(
        sweep_id="s",
        name=name,
        status="succeeded",
        objectives=[ObjectiveInfo(o, "maximize", 0.0) for o in outcome.objectives],
        trials=[record],
        n_trials=1,
    )
    return build_report(data)
