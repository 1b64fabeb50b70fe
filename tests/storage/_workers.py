"""Functions the concurrency tests run in separate (spawned) processes."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from storage import (
    claim_next_sweep,
    create_engine_for,
    current_revision,
    init_database,
    record_steps,
    replace_front,
    session_scope,
    upsert_trial,
)


def claim_until_empty(url: str, worker_id: str, barrier: Any, results: Any) -> None:
    """Claim sweeps one transaction at a time until the queue is empty; report the ids."""
    engine = create_engine_for(url)
    barrier.wait(timeout=60)
    claimed = []
    while True:
        with session_scope(engine) as session:
            sweep = claim_next_sweep(session, worker_id=worker_id)
            if sweep is None:
                break
            claimed.append(sweep.id)
    results.put((worker_id, claimed))


def write_steps(
    url: str, sweep_id: str, trial_number: int, steps: list[int], barrier: Any, results: Any
) -> None:
    """Write the given steps, two per transaction, racing the other writers."""
    engine = create_engine_for(url)
    barrier.wait(timeout=60)
    for start in range(0, len(steps), 2):
        batch = [
            {"step": step, "reward": float(step), "writer_pid": os.getpid()}
            for step in steps[start : start + 2]
        ]
        with session_scope(engine) as session:
            record_steps(session, sweep_id=sweep_id, trial_number=trial_number, steps=batch)
    results.put(len(steps))


def die_mid_transaction(url: str, sweep_id: str, ready: Any) -> None:
    """Insert a trial and steps, flush them, signal ``ready``, then get killed before commit."""
    engine = create_engine_for(url)
    with session_scope(engine) as session:
        upsert_trial(session, sweep_id=sweep_id, number=7, weights=[0.5, 0.5], alpha=0.5)
        record_steps(
            session,
            sweep_id=sweep_id,
            trial_number=7,
            steps=[{"step": step, "reward": 1.0} for step in range(5)],
        )
        session.flush()
        ready.set()
        time.sleep(120)
        os.kill(os.getpid(), signal.SIGKILL)


def migrate(url: str, barrier: Any, results: Any) -> None:
    """Start up like a service process: migrate the database, racing the others."""
    barrier.wait(timeout=60)
    init_database(url)
    results.put(current_revision(create_engine_for(url)))


#: The two fronts :func:`replace_fronts` alternates between: members -> hypervolume.
FRONTS = {(0, 1): 1.0, (2,): 2.0}


def replace_fronts(url: str, sweep_id: str, rounds: int, barrier: Any, results: Any) -> None:
    """Alternate the sweep's front between the two :data:`FRONTS`, racing readers."""
    engine = create_engine_for(url)
    barrier.wait(timeout=60)
    fronts = list(FRONTS.items())
    for round_ in range(rounds):
        members, hypervolume = fronts[round_ % 2]
        with session_scope(engine) as session:
            replace_front(
                session,
                sweep_id=sweep_id,
                members=list(members),
                hypervolume=hypervolume,
                reference_point=[0.0, 0.0],
            )
    results.put(rounds)
