"""``bai-sweep run SWEEP.yaml``: nightly mode — run a sweep synchronously, report, compare.

Warm start (on unless ``--no-warm-start`` or ``nightly.warm_start: false``): the front ratios of
the sweep it compares with (the previous successful sweep of the same name, or
``--compare-to ID``) are added to the spec's seed points before it runs, so both nights
evaluate the same candidates. An unfinished sweep of the same name and spec (a killed run) is
resumed rather than started again; the warm-started spec is the same on every attempt, as the
sweep it is built from is. Exit codes: 0 the sweep succeeded and did not regress; 1 it failed,
was cancelled or stopped; 2 a usage or spec error; 3 its front regressed: an interval
(hypervolume, an objective's best) fell wholly below the previous one by more than the
tolerance (see :mod:`sweeps.nightly`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from service.cli._app import app, console, fail, user_errors, warn
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
        None,
        "--tolerance",
        min=0.0,
        help="Extra margin beyond the 95% intervals before a drop is a regression "
        "(default: the spec's nightly.tolerance, 0).",
    ),
    warm_start: bool | None = typer.Option(
        None,
        "--warm-start/--no-warm-start",
        help="Re-evaluate the compared sweep's front ratios first "
        "(default: the spec's nightly.warm_start, on).",
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
    from sweeps.nightly import compare_sweeps, exit_code, warm_start_spec
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
        for warning in spec.short_window_warnings():
            warn(warning)
        engine = init_database(settings.resolved_database_url)
    use_warm_start = spec.nightly.warm_start if warm_start is None else warm_start
    with user_errors(), session_scope(engine, read_only=True) as session:
        # The sweep compared with is also the warm start's source: chosen before the run.
        if compare_to in ("last", "none"):
            latest = repository.latest_successful_sweep(session, name=spec.name)
            source_id = latest.id if latest else None
        else:
            try:
                repository.get_sweep(session, sweep_id=compare_to)
            except NotFoundError:
                raise fail(f"--compare-to: no sweep {compare_to!r}") from None
            source_id = compare_to
        needed = compare_to != "none" or use_warm_start
        previous_data = (
            load_report_data(session, sweep_id=source_id, with_steps=False)
            if source_id and needed
            else None
        )
    warm = None
    if use_warm_start:
        spec, warm = warm_start_spec(spec, previous_data)
        for line in warm.lines():
            console.print(line, highlight=False, soft_wrap=True)
    result = run_synchronously(
        settings=settings, engine=engine, spec=spec, report_dir=report_dir, fresh=fresh
    )
    comparison = None
    if compare_to != "none":
        comparison = compare_sweeps(
            result.data,
            previous_data,
            tolerance=spec.nightly.tolerance if tolerance is None else tolerance,
        )
        (result.directory / "comparison.json").write_text(
            json.dumps(
                {**comparison.to_json(), "warm_start": warm.to_json() if warm else None},
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
