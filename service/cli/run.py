"""``bai-sweep run SWEEP.yaml``: nightly mode — run a sweep synchronously, report, compare.

An unfinished sweep of the same name and spec (a killed run) is resumed rather than started
again. Exit codes: 0 the sweep succeeded and did not regress; 1 it failed, was cancelled or
stopped; 2 a usage or spec error; 3 its front regressed beyond the tolerance against the
previous successful sweep of the same name (or ``--compare-to ID``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from service.cli._app import app, console, err_console, fail, user_errors
from service.cli._service import load_settings


@app.command()
def run(
    spec_file: Path = typer.Argument(..., help="Sweep spec (YAML or JSON)."),
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database URL (default: BAI_SWEEP_DATABASE_URL, else SQLite in the data directory).",
    ),
    report_dir: Path | None = typer.Option(
        None, "--report-dir", help="Where to write the report (default: <data dir>/reports/<id>)."
    ),
    compare_to: str = typer.Option(
        "last",
        "--compare-to",
        help="'last' (the previous successful sweep of the same name), a sweep id, or 'none'.",
    ),
    tolerance: float | None = typer.Option(
        None, "--tolerance", min=0.0, help="Allowed drop (default: the spec's nightly.tolerance)."
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Start a new sweep even if an unfinished one can be resumed."
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster (default: BAI_SWEEP_RAY_ADDRESS / RAY_ADDRESS, else local)."
    ),
) -> None:
    """Run a sweep synchronously, write its report and compare it with the previous one."""
    from service.cli._sweep_session import print_summary, run_synchronously
    from storage import init_database, repository, session_scope
    from storage.exceptions import NotFoundError
    from sweeps._ray_mode import check_ray_address
    from sweeps.nightly import compare_sweeps, exit_code
    from sweeps.preflight import check_spec
    from sweeps.results import load_report_data
    from sweeps.spec import SweepSpec

    settings = load_settings(database_url=db, ray_address=ray_address)
    with user_errors():
        check_ray_address(settings.ray_address)
        spec = SweepSpec.from_file(spec_file)
        # Before the database, the report directory or Ray: a spec that can never run
        # creates nothing.
        check_spec(
            spec,
            trust_remote_code=settings.trust_remote_code,
            local_devices=settings.ray_address is None,
        )
        warning = spec.probe.short_window_warning()
        if warning:
            err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        engine = init_database(settings.resolved_database_url)
    if compare_to not in ("last", "none"):
        with user_errors(), session_scope(engine, read_only=True) as session:
            try:
                repository.get_sweep(session, sweep_id=compare_to)
            except NotFoundError:
                raise fail(f"--compare-to: no sweep {compare_to!r}") from None
    result = run_synchronously(
        settings=settings, engine=engine, spec=spec, report_dir=report_dir, fresh=fresh
    )
    comparison = None
    if compare_to != "none":
        with session_scope(engine, read_only=True) as session:
            previous_id: str | None = compare_to
            if compare_to == "last":
                previous = repository.latest_successful_sweep(
                    session, name=spec.name, exclude_id=result.outcome.sweep_id
                )
                previous_id = previous.id if previous else None
            previous_data = (
                load_report_data(session, sweep_id=previous_id, with_steps=False)
                if previous_id
                else None
            )
        comparison = compare_sweeps(
            result.data,
            previous_data,
            tolerance=spec.nightly.tolerance if tolerance is None else tolerance,
        )
        (result.directory / "comparison.json").write_text(
            json.dumps(
                {
                    "previous_sweep_id": comparison.previous_sweep_id,
                    "tolerance": comparison.tolerance,
                    "hypervolume": comparison.hypervolume,
                    "previous_hypervolume": comparison.previous_hypervolume,
                    "hypervolume_comparable": comparison.hypervolume_comparable,
                    "best": comparison.best,
                    "previous_best": comparison.previous_best,
                    "regressions": comparison.regressions,
                },
                indent=2,
            )
            + "\n"
        )
    print_summary(result)
    for line in comparison.lines() if comparison else []:
        console.print(line, highlight=False, soft_wrap=True)
    code = exit_code(result.outcome.status, comparison)
    if code == 1:
        console.print(
            f"exit 1: sweep {result.outcome.status}"
            + (f" ({result.outcome.error})" if result.outcome.error else ""),
            highlight=False,
            soft_wrap=True,
        )
    elif code == 3:
        console.print("exit 3: the front regressed", highlight=False)
    raise typer.Exit(code)
