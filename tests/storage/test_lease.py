"""The sweep lease on SQLite and PostgreSQL: claim, heartbeat, stop/cancel/lost, settle."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from storage import (
    ConflictError,
    LeaseState,
    RunEnd,
    SweepLease,
    SweepStatus,
    create_sweep,
    get_sweep,
    reclaim_stale_sweeps,
    request_cancel,
    session_scope,
)

SPEC = {"name": "nightly", "search": {"n_trials": 2}}


def _queue(engine: Engine, name: str = "s") -> str:
    with session_scope(engine) as session:
        return create_sweep(session, name=name, spec={"name": name}, n_trials=2).id


def _sweep(engine: Engine, sweep_id: str):
    with session_scope(engine, read_only=True) as session:
        return get_sweep(session, sweep_id=sweep_id)


def test_claim_settle_and_status_mapping(engine: Engine) -> None:
    ids = [_queue(engine, name) for name in ("a", "b", "c")]
    expected = {
        RunEnd.SUCCEEDED: SweepStatus.SUCCEEDED,
        RunEnd.FAILED: SweepStatus.FAILED,
        RunEnd.STOPPED: SweepStatus.QUEUED,
    }
    for sweep_id, (end, status) in zip(ids, expected.items(), strict=True):
        lease = SweepLease.claim_next(engine, worker_id="w", heartbeat_interval=0.05)
        assert lease is not None and lease.sweep_id == sweep_id and not lease.resumed
        with lease:
            assert lease.state is LeaseState.HELD and not lease.should_stop
            settled = lease.settle(end, "boom" if end is RunEnd.FAILED else None)
        assert settled is (LeaseState.RELEASED if end is RunEnd.STOPPED else LeaseState.FINISHED)
        stored = _sweep(engine, sweep_id)
        assert stored.status is status
        assert stored.error == ("boom" if end is RunEnd.FAILED else None)
    assert SweepLease.claim(engine, sweep_id=ids[0], worker_id="w") is None  # finished
    again = SweepLease.claim(engine, sweep_id=ids[2], worker_id="w2")
    assert again is not None and again.resumed


def test_heartbeat_sees_cancel_and_stop_wins_nothing_over_it(engine: Engine) -> None:
    sweep_id = _queue(engine)
    lease = SweepLease.claim_next(engine, worker_id="w")
    assert lease is not None
    lease.request_stop()
    assert lease.state is LeaseState.STOPPING and lease.should_stop
    with session_scope(engine) as session:
        request_cancel(session, sweep_id=sweep_id)
    assert lease.beat() is LeaseState.CANCELLING  # a cancel outranks a shutdown
    lease.settle(RunEnd.CANCELLED)
    assert _sweep(engine, sweep_id).status is SweepStatus.CANCELLED


def test_a_taken_over_sweep_is_lost_and_never_written(engine: Engine) -> None:
    from datetime import timedelta

    from storage.models import utc_now

    sweep_id = _queue(engine)
    lease = SweepLease.claim_next(engine, worker_id="slow")
    assert lease is not None
    with session_scope(engine) as session:  # its heartbeat went stale: another worker took it
        reclaim_stale_sweeps(
            session, stale_after=timedelta(seconds=1), now=utc_now() + timedelta(seconds=5)
        )
    other = SweepLease.claim_next(engine, worker_id="fast")
    assert other is not None and other.resumed
    assert lease.beat() is LeaseState.LOST
    assert lease.settle(RunEnd.SUCCEEDED) is LeaseState.LOST
    assert lease.finish(SweepStatus.FAILED) is False
    stored = _sweep(engine, sweep_id)
    assert stored.status is SweepStatus.RUNNING and stored.worker_id == "fast"


def test_the_heartbeat_thread_beats_until_settled(engine: Engine) -> None:
    import time

    sweep_id = _queue(engine)
    lease = SweepLease.claim_next(engine, worker_id="w", heartbeat_interval=0.05)
    assert lease is not None
    first = _sweep(engine, sweep_id).heartbeat_at
    with lease:
        time.sleep(0.5)
        assert _sweep(engine, sweep_id).heartbeat_at > first
        with session_scope(engine) as session:
            request_cancel(session, sweep_id=sweep_id)
        deadline = time.monotonic() + 5
        while lease.state is LeaseState.HELD and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.state is LeaseState.CANCELLING
        lease.settle(RunEnd.CANCELLED)


def test_an_escaping_error_fails_the_sweep_and_an_unsettled_lease_is_handed_back(
    engine: Engine,
) -> None:
    crashed, left = _queue(engine, "crash"), _queue(engine, "left")
    with pytest.raises(RuntimeError), SweepLease.claim_next(engine, worker_id="w") as lease:
        assert lease.sweep_id == crashed
        raise RuntimeError("boom")
    stored = _sweep(engine, crashed)
    assert stored.status is SweepStatus.FAILED and "RuntimeError: boom" in stored.error
    with SweepLease.claim_next(engine, worker_id="w") as lease:
        assert lease.sweep_id == left
    assert _sweep(engine, left).status is SweepStatus.QUEUED


def test_for_run_creates_resumes_and_refuses_a_live_holder(engine: Engine) -> None:
    def for_run(worker: str, *, alive: bool, spec: dict = SPEC, fresh: bool = False) -> SweepLease:
        return SweepLease.for_run(
            engine,
            name=spec["name"],
            spec=spec,
            n_trials=2,
            worker_id=worker,
            holder_alive=lambda sweep: alive,
            fresh=fresh,
        )

    first = for_run("w1", alive=True)
    assert not first.resumed
    with pytest.raises(ConflictError, match="being run by worker w1"):
        for_run("w2", alive=True)
    again = for_run("w2", alive=False)
    assert again.resumed and again.sweep_id == first.sweep_id
    stored = _sweep(engine, again.sweep_id)
    assert stored.worker_id == "w2" and stored.attempts == 2
    fresh = for_run("w3", alive=False, fresh=True)
    assert not fresh.resumed and fresh.sweep_id != first.sweep_id
    changed = for_run("w3", alive=False, spec={**SPEC, "export_front": True})
    assert not changed.resumed and changed.sweep_id not in (first.sweep_id, fresh.sweep_id)


def test_interrupted_trials_do_not_count_against_the_budget(engine: Engine) -> None:
    from storage import count_budget_trials, sweep_summary, upsert_trial

    sweep_id = _queue(engine)
    rows = [
        ("complete", None),
        ("failed", "probe diverged"),
        ("pruned", "cancelled"),
        ("failed", "interrupted: its run was lost before it finished"),
        ("running", None),
    ]
    with session_scope(engine) as session:
        for number, (state, error) in enumerate(rows):
            upsert_trial(
                session,
                sweep_id=sweep_id,
                number=number,
                weights=[0.5, 0.5],
                alpha=0.5,
                state=state,
                error=error,
            )
        assert count_budget_trials(session, sweep_id=sweep_id) == 3
        # The status summary (what reports read) counts the same way.
        summary = sweep_summary(session, sweep_id=sweep_id)
        assert summary.interrupted == 1 and summary.n_finished == 3
