"""Storage speed: write 100k probe steps, then read a 1000-trial sweep's summary and front.

Runs on a SQLite file and on PostgreSQL (a throw-away ``bai_bench_<random>`` database on the
server given by ``--postgres``). Target: the summary (status, counts per state, front, latest
step of the running trials) reads in < 50 ms on both.

    .venv/bin/python benchmarks/storage_speed.py [--trials 1000] [--steps 100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._scratch import postgres_database  # noqa: E402 - after the path set-up
from storage import (  # noqa: E402
    claim_next_sweep,
    create_sweep,
    dispose_engines,
    get_front,
    init_database,
    list_trials,
    record_steps,
    replace_front,
    session_scope,
    sweep_summary,
    upsert_trial,
)

SUMMARY_TARGET_MS = 50.0


def _timed(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and worst wall time in milliseconds over ``repeats`` calls (after one warm-up)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def _front_numbers(objectives: dict[int, tuple[float, float]]) -> list[int]:
    """Non-dominated trials (both objectives maximised), by the first objective."""
    ranked = sorted(objectives.items(), key=lambda item: (-item[1][0], -item[1][1]))
    front, best_second = [], float("-inf")
    for number, (_, second) in ranked:
        if second > best_second:
            front.append(number)
            best_second = second
    return front


def run(engine: Engine, *, trials: int, steps: int, repeats: int) -> dict[str, float]:
    """Fill one sweep and time the writes and the reads; returns milliseconds per operation."""
    rng = random.Random(0)
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, name="bench", spec={"bench": True}, n_trials=trials).id
        claim_next_sweep(session, worker_id="bench")
    objectives: dict[int, tuple[float, float]] = {}
    start = time.perf_counter()
    with session_scope(engine) as session:
        for number in range(trials):
            running = number >= trials - 2
            values = (rng.random(), rng.random())
            if not running:
                objectives[number] = values
            upsert_trial(
                session,
                sweep_id=sweep_id,
                number=number,
                weights=[0.5, 0.5],
                alpha=rng.random(),
                state="running" if running else "complete",
                objectives=None if running else {"stability": values[0], "benchmark": values[1]},
                stability=None if running else {"length_retention": values[0]},
                benchmarks=None if running else {"bai_facts_mc": values[1]},
            )
    trials_ms = (time.perf_counter() - start) * 1000

    per_trial = steps // trials
    start = time.perf_counter()
    for number in range(trials):
        # One transaction per trial, as the runner streams a trial's probe steps.
        with session_scope(engine) as session:
            record_steps(
                session,
                sweep_id=sweep_id,
                trial_number=number,
                steps=[
                    {
                        "step": step,
                        "length_mean": 100.0 - step,
                        "length_p10": 50.0,
                        "length_p50": 90.0,
                        "length_p90": 140.0,
                        "truncated_fraction": 0.1,
                        "reward": rng.random(),
                        "kl": 0.01 * step,
                        "entropy": 2.0,
                        "eos_rate": 0.9,
                        "policy_loss": 0.1,
                        "value_loss": 0.2,
                    }
                    for step in range(per_trial)
                ],
            )
    steps_ms = (time.perf_counter() - start) * 1000

    front = _front_numbers(objectives)
    with session_scope(engine) as session:
        replace_front(
            session, sweep_id=sweep_id, members=front, hypervolume=0.8, reference_point=[0, 0]
        )

    def summary() -> None:
        with session_scope(engine, read_only=True) as session:
            result = sweep_summary(session, sweep_id=sweep_id)
        assert sum(result.trial_counts.values()) == trials
        assert result.front is not None and len(result.front.members) == len(front)
        assert all(progress.latest_step is not None for progress in result.running)

    def front_only() -> None:
        with session_scope(engine, read_only=True) as session:
            get_front(session, sweep_id=sweep_id)

    def trials_page() -> None:
        with session_scope(engine, read_only=True) as session:
            list_trials(session, sweep_id=sweep_id, offset=500, limit=100)

    summary_ms, summary_worst = _timed(summary, repeats)
    front_ms, _ = _timed(front_only, repeats)
    page_ms, _ = _timed(trials_page, repeats)
    return {
        f"insert {trials} trials, 1 transaction (ms)": trials_ms,
        f"insert {per_trial * trials} steps, {trials} transactions (ms)": steps_ms,
        "steps written per second": per_trial * trials / (steps_ms / 1000),
        "front members": len(front),
        "summary median ms": summary_ms,
        "summary worst ms": summary_worst,
        "front median ms": front_ms,
        "trials page (100) median ms": page_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="maintenance database of the PostgreSQL server to create the bench database on",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = init_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        results["sqlite (file, WAL)"] = run(
            engine, trials=args.trials, steps=args.steps, repeats=args.repeats
        )
        dispose_engines()
    if not args.skip_postgres:
        with postgres_database(args.postgres) as url:
            results["postgresql"] = run(
                init_database(url), trials=args.trials, steps=args.steps, repeats=args.repeats
            )

    ok = True
    for backend, figures in results.items():
        print(f"\n{backend}")
        for label, value in figures.items():
            print(f"  {label:<48} {value:12.1f}")
        passed = figures["summary median ms"] < SUMMARY_TARGET_MS
        ok &= passed
        print(f"  summary < {SUMMARY_TARGET_MS:.0f} ms: {'yes' if passed else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
