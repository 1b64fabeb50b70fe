"""Running one sweep synchronously from the CLI (``bai-sweep run`` and ``bai-sweep demo``).

Claims the sweep (resuming an unfinished one of the same name and spec), runs it with a
progress display (a rich bar on a terminal, one line per trial event otherwise), stops
gracefully on SIGINT/SIGTERM (the sweep goes back to the queue; the same command resumes it),
then writes the report and prints the front.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from service.cli._app import console, fail, user_errors
from service.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy import Engine

    from storage.models import Sweep
    from sweeps.reports import Report, SweepReportData
    from sweeps.runner import SweepOutcome, SweepProgress
    from sweeps.spec import SweepSpec


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_alive(sweep: Sweep, *, stale_after: float) -> bool:
    """Whether the worker holding ``sweep`` may still be running it.

    A worker on this host (ids are ``host:pid:...``) is alive while its process exists; any
    other worker while its heartbeat is younger than ``stale_after`` seconds.
    """
    from storage.models import utc_now

    parts = (sweep.worker_id or "").split(":")
    if len(parts) >= 2 and parts[0] == socket.gethostname() and parts[1].isdigit():
        return _pid_alive(int(parts[1]))
    if sweep.heartbeat_at is None:
        return False
    return (utc_now() - sweep.heartbeat_at).total_seconds() < stale_after


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
    from storage import display_url, repository, session_scope
    from sweeps.exceptions import SweepsError
    from sweeps.nightly import claim_for_run
    from sweeps.reports import build_report
    from sweeps.results import load_report_data
    from sweeps.runner import run_sweep

    url = settings.resolved_database_url
    worker_id = default_worker_id()
    with user_errors(), session_scope(engine) as session:
        claimed = claim_for_run(
            session,
            spec=spec,
            worker_id=worker_id,
            worker_alive=lambda sweep: worker_alive(sweep, stale_after=settings.stale_after),
            fresh=fresh,
        )
    verb = "resuming" if claimed.resumed else "running"
    console.print(
        f"{verb} sweep {claimed.sweep_id} ({spec.name}, {spec.search.n_trials} trials) on "
        f"{display_url(url)}",
        highlight=False,
        soft_wrap=True,
    )
    stop_requested = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        console.print(f"{signal.Signals(signum).name}: stopping (run the same command to resume)")

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    options: dict[str, Any] = {
        "database_url": url,
        "sweep_id": claimed.sweep_id,
        "data_dir": settings.data_dir,
        "worker_id": worker_id,
        "ray_address": settings.ray_address,
        "heartbeat_interval": settings.heartbeat_interval,
        "should_stop": lambda: stop_requested,
        "trust_remote_code": settings.trust_remote_code,
    }
    try:
        with user_errors(SweepsError, code=1):
            if console.is_terminal:
                columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
                with Progress(*columns, console=console, transient=True) as bar:
                    options["progress"] = _ProgressView(bar, spec.search.n_trials)
                    outcome = run_sweep(**options)
            else:
                options["progress"] = _ProgressView(None, spec.search.n_trials)
                outcome = run_sweep(**options)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if outcome.status == "stopped":
        with session_scope(engine) as session:
            repository.release_sweep(session, sweep_id=claimed.sweep_id, worker_id=worker_id)
        raise fail(f"sweep {claimed.sweep_id} stopped; run the same command to resume", 1)
    with session_scope(engine, read_only=True) as session:
        data = load_report_data(session, sweep_id=claimed.sweep_id)
    report = build_report(data)
    directory = report.write(report_dir or settings.data_dir / "reports" / claimed.sweep_id)
    return SessionResult(outcome, data, report, directory.resolve())


def print_summary(result: SessionResult) -> None:
    """The outcome line, the Pareto front as a table and where the report is."""
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
    # trial, kind, weights, alpha and the objectives; the stability details are in the report.
    shown = 4 + len(result.data.objectives)
    header, rows = header[:shown], [row[:shown] for row in rows]
    if rows:
        front = Table(
            title=f"Pareto front (hypervolume {result.report.hypervolume:.4f})",
            title_justify="left",
        )
        for column in header:
            front.add_column(column, no_wrap=True)
        for row in rows:
            front.add_row(*row)
        console.print(front)
    console.print(f"report: {result.directory / 'report.md'}", highlight=False, soft_wrap=True)
