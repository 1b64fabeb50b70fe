"""The stored bodies of the hot reads follow every write, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import Engine

from storage import (
    SweepStatus,
    claim_next_sweep,
    count_budget_trials,
    create_sweep,
    fail_running_trials,
    finish_sweep,
    record_steps,
    replace_front,
    request_cancel,
    session_scope,
    upsert_trial,
)
from storage.views import read_stored, render_pareto, render_summary

SPEC = {"name": "views", "objectives": ["stability", {"name": "kl", "direction": "minimize"}]}
STATISTICS = {
    "tied": [1],
    "hypervolume_interval": {
        "mean": 0.5,
        "low": 0.4,
        "high": 0.6,
        "sem": 0.05,
        "n": 2,
        "confidence": 0.95,
    },
    "infeasible": [],
    "recommendation": None,
}


def _stored(engine: Engine, sweep_id: str, kind: str) -> Any:
    body = read_stored(engine, sweep_id, kind)
    return None if body is None else json.loads(body)


def _check_in_step(engine: Engine, sweep_id: str) -> dict[str, Any]:
    """The stored summary equals a fresh render; return it."""
    with session_scope(engine, read_only=True) as session:
        live = render_summary(session.connection(), sweep_id)
        live_pareto = render_pareto(session.connection(), sweep_id)
    assert live is not None
    assert read_stored(engine, sweep_id, "summary") == live
    assert read_stored(engine, sweep_id, "pareto") == live_pareto
    return json.loads(live)


def test_views_follow_every_write(engine: Engine) -> None:
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, name="views", spec=SPEC, n_trials=4).id
    summary = _check_in_step(engine, sweep_id)
    assert summary["status"] == "queued" and summary["front"] is None
    assert summary["objectives"] == [
        {"name": "stability", "direction": "maximize"},
        {"name": "kl", "direction": "minimize"},
    ]
    pareto = _stored(engine, sweep_id, "pareto")
    assert pareto["revision"] == 0 and pareto["members"] == [] and pareto["tied"] == []

    with session_scope(engine) as session:
        claim_next_sweep(session, worker_id="w1")
    assert _check_in_step(engine, sweep_id)["status"] == "running"

    with session_scope(engine) as session:
        for number in range(3):
            upsert_trial(session, sweep_id=sweep_id, number=number, weights=[1.0], alpha=0.25)
        record_steps(
            session,
            sweep_id=sweep_id,
            trial_number=1,
            steps=[{"step": s, "reward_mean": s / 10, "token_entropy": 0.5} for s in range(3)],
        )
    running = _check_in_step(engine, sweep_id)["running_trials"]
    assert [t["number"] for t in running] == [0, 1, 2]
    assert running[0]["latest_step"] is None
    assert running[1]["latest_step"]["step"] == 2
    assert running[1]["latest_step"]["reward_mean"] == 0.2
    assert running[1]["latest_step"]["extra"] == {"token_entropy": 0.5}

    with session_scope(engine) as session:
        upsert_trial(
            session,
            sweep_id=sweep_id,
            number=0,
            weights=[1.0],
            alpha=0.25,
            state="complete",
            objectives={"stability": 0.7, "kl": 0.1},
        )
        replace_front(
            session,
            sweep_id=sweep_id,
            members=[0],
            hypervolume=0.5,
            reference_point=[0.0, 1.0],
            statistics=STATISTICS,
        )
    summary = _check_in_step(engine, sweep_id)
    assert summary["front"]["size"] == 1 and summary["front"]["revision"] == 1
    pareto = _stored(engine, sweep_id, "pareto")
    assert [m["trial_number"] for m in pareto["members"]] == [0]
    assert pareto["members"][0]["objectives"] == {"stability": 0.7, "kl": 0.1}
    assert {key: pareto[key] for key in STATISTICS} == STATISTICS

    # A front stored without statistics has no stored body: the service computes them.
    with session_scope(engine) as session:
        replace_front(
            session, sweep_id=sweep_id, members=[0], hypervolume=0.5, reference_point=[0.0, 1.0]
        )
    assert _stored(engine, sweep_id, "pareto") is None
    assert _check_in_step(engine, sweep_id)["front"]["revision"] == 2

    # A lost run: its running trials are interrupted, and not counted as finished.
    with session_scope(engine) as session:
        fail_running_trials(session, sweep_id=sweep_id, error="interrupted: worker lost")
        upsert_trial(
            session,
            sweep_id=sweep_id,
            number=3,
            weights=[1.0],
            alpha=0.5,
            state="failed",
            error="probe diverged",
        )
    progress = _check_in_step(engine, sweep_id)["progress"]
    assert progress == {
        "total": 4,
        "completed": 1,
        "failed": 3,
        "pruned": 0,
        "running": 0,
        "interrupted": 2,
        "finished": 2,
    }
    with session_scope(engine, read_only=True) as session:
        assert count_budget_trials(session, sweep_id=sweep_id) == progress["finished"]

    with session_scope(engine) as session:
        request_cancel(session, sweep_id=sweep_id)
    assert _check_in_step(engine, sweep_id)["cancel_requested"] is True
    with session_scope(engine) as session:
        finish_sweep(session, sweep_id=sweep_id, status=SweepStatus.CANCELLED)
    summary = _check_in_step(engine, sweep_id)
    assert summary["status"] == "cancelled" and summary["finished_at"] is not None


def test_a_rolled_back_write_leaves_the_views(engine: Engine) -> None:
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, name="views", spec=SPEC, n_trials=2).id
    before = read_stored(engine, sweep_id, "summary")
    try:
        with session_scope(engine) as session:
            upsert_trial(session, sweep_id=sweep_id, number=0, weights=[1.0], alpha=0.5)
            raise RuntimeError("the writer failed")
    except RuntimeError:
        pass
    assert read_stored(engine, sweep_id, "summary") == before
    assert read_stored(engine, "no-such-sweep", "summary") is None


def test_concurrent_writers_render_what_both_committed(engine: Engine) -> None:
    """The second writer of a sweep waits for the first one's lock, then renders its trial
    too (without the lock, on PostgreSQL, the later commit would drop the earlier trial)."""
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, name="views", spec=SPEC, n_trials=2).id
    first_wrote = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            first_wrote.wait(10)
            with session_scope(engine) as session:
                upsert_trial(session, sweep_id=sweep_id, number=1, weights=[1.0], alpha=0.5)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=second_writer)
    thread.start()
    with session_scope(engine) as session:
        upsert_trial(session, sweep_id=sweep_id, number=0, weights=[1.0], alpha=0.5)
        first_wrote.set()
        time.sleep(0.3)  # let the second writer reach the sweep's lock
    thread.join(30)
    assert not errors and not thread.is_alive()
    assert _check_in_step(engine, sweep_id)["progress"]["running"] == 2
