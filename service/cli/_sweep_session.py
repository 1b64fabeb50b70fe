"""Running one sweep synchronously from the CLI (``bai-sweep run`` and ``bai-sweep demo``).

Claims the sweep (resuming an unfinished one of the same name and spec), runs it with a
progress display (a rich bar on a terminal, one line per trial event otherwise), stops
gracefully on SIGINT/SIGTERM (the sweep goes back to the queue; the same command resumes it),
then writes the report and prints the front.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from service.cli._app import console, fail, user_errors
from service.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy import Engine

    from sweeps.reports import Report, SweepReportData
    from sweeps.runner import SweepOutcome, SweepProgress
    from sweeps.spec import SweepSpec


class _ProgressView:
    """Rich progress bar on a terminal; one line per trial event otherwise (CI logs)."""

    def __init__(self, progress: Progress | None, n_trials: int) -> None:
        self.progress = progress
        self.task = progress.add_task("trials", total=n_trials) if progress else None

    def __call__(self, snapshot: SweepProgress) -> None:
        hv = "–" if snapshot.hypervolume is None else f"{snapshot.hypervolume:.4f}"
        if self.progress is not None and self.task is not None:
            running = ", ".join(f"#{n}@{s}" for n, s in sorted(snapshot.running.items()))
            self.progress.update(
                self.task,
                completed=snapshot.finished,
                description=f"hv {hv} | running {running or '-'} | {snapshot.event}",
            )
        elif " step " not in snapshot.event:
            console.print(
                f"[{snapshot.finished}/{snapshot.n_trials}] hv {hv} · {snapshot.event}",
                highlight=False,
                soft_wrap=True,
            )


@dataclass(frozen=True)
class SessionResult:
    """A finished synchronous sweep: its outcome, report data, report and report directory."""

    outcome: SweepOutcome
    data: SweepReportData
    report: Report
    directory: Path


def run_synchronously(
    *,
    settings: Settings,
    engine: Engine,
    spec: SweepSpec,
    report_dir: Path | None,
    fresh: bool = False,
) -> SessionResult:
    """Claim (or resume), run, and report one sweep; exit 1 with a message if it was stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from service.worker import default_worker_id
    from storage import display_url, session_scope
    from storage.lease import RunEnd, SweepLease, holder_alive
    from sweeps._ray_mode import check_ray_address
    from sweeps.exceptions import SweepsError
    from sweeps.reports import build_report
    from sweeps.results import load_report_data
    from sweeps.runner import run_sweep

    url = settings.resolved_database_url
    with user_errors():
        check_ray_address(settings.ray_address)
        lease = SweepLease.for_run(
            engine,
            name=spec.name,
            spec=spec.to_json_dict(),
            n_trials=spec.trial_budget(),
            worker_id=default_worker_id(),
            holder_alive=lambda sweep: holder_alive(sweep, stale_after=settings.stale_after),
            heartbeat_interval=settings.heartbeat_interval,
            fresh=fresh,
        )
    verb = "resuming" if lease.resumed else "running"
    console.print(
        f"{verb} sweep {lease.sweep_id} ({spec.name}, {_budget(spec)}) on {display_url(url)}",
        highlight=False,
        soft_wrap=True,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        lease.request_stop()
        console.print(f"{signal.Signals(signum).name}: stopping (run the same command to resume)")

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    options: dict[str, Any] = {
        "lease": lease,
        "data_dir": settings.data_dir,
        "ray_address": settings.ray_address,
        "trust_remote_code": settings.trust_remote_code,
    }
    try:
        with user_errors(SweepsError, code=1), lease:
            if console.is_terminal:
                columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
                with Progress(*columns, console=console, transient=True) as bar:
                    options["progress"] = _ProgressView(bar, spec.trial_budget())
                    outcome = run_sweep(**options)
            else:
                options["progress"] = _ProgressView(None, spec.trial_budget())
                outcome = run_sweep(**options)
            lease.settle(outcome.status, outcome.error)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if outcome.status is RunEnd.STOPPED:
        raise fail(f"sweep {lease.sweep_id} stopped; run the same command to resume", 1)
    with session_scope(engine, read_only=True) as session:
        data = load_report_data(session, sweep_id=lease.sweep_id)
    report = build_report(data)
    directory = report.write(report_dir or settings.data_dir / "reports" / lease.sweep_id)
    return SessionResult(outcome, data, report, directory.resolve())


def print_summary(result: SessionResult) -> None:
    """The outcome line, the Pareto front as a table, the recommendation (the rule it follows
    is in the report) and where the report is."""
    from rich import box
    from rich.table import Table

    outcome = result.outcome
    console.print(
        f"sweep {outcome.sweep_id}: {outcome.status} · {outcome.complete} complete, "
        f"{outcome.failed} failed, {outcome.pruned} pruned · {outcome.wall_time_s:.1f} s"
        + (f" · {outcome.error}" if outcome.error else ""),
        highlight=False,
        soft_wrap=True,
    )
    header, rows = result.report.front_table()
    # trial, rung, kind, weights, alpha and the objectives (a spec has at least one); the
    # stability details are in the report.
    shown = header.index(result.data.objectives[-1].name) + 1
    header, rows = header[:shown], [row[:shown] for row in rows]
    if rows:
        # Rules under the header only and one space between columns: the demo's front (two
        # objectives with intervals) fits an 80-column log (a nightly job's output is not a
        # terminal, and rich cuts what does not fit).
        front = Table(
            title=f"Pareto front (hypervolume {result.report.hypervolume:.4f})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            collapse_padding=True,
            show_edge=False,
        )
        for column in header:
            front.add_column(column, no_wrap=True)
        for row in rows:
            front.add_row(*row)
        console.print(front)
    console.print("recommendation (the rule is in the report):", highlight=False)
    for line in result.report.recommendation_lines(rule=False):
        console.print(f"  {line.replace('**', '')}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"report: {result.directory / 'report.md'}", highlight=False, soft_wrap=True)


def _budget(spec: SweepSpec) -> str:
    """``6 trials``, or with successive halving ``13 trials (probe runs) for 9 candidates``."""
    if not spec.fidelity.enabled:
        return f"{spec.search.n_trials} trials"
    return (
        f"{spec.trial_budget()} trials (probe runs) for {spec.search.n_trials} candidates "
        f"over {len(spec.rungs())} rungs"
    )
