"""The storage contract: the same tests on SQLite and on PostgreSQL (see ``conftest.py``)."""

from __future__ import annotations

import multiprocessing
import queue
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import BaseModel
from sqlalchemy import Engine, func, inspect, select

from storage import (
    Base,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    SeedKind,
    SweepStatus,
    Trial,
    TrialState,
    TrialStep,
    claim_next_sweep,
    claim_sweep,
    create_engine_for,
    create_sweep,
    current_revision,
    fail_running_trials,
    finish_sweep,
    get_front,
    get_sweep,
    get_trial,
    head_revision,
    heartbeat,
    init_database,
    latest_successful_sweep,
    list_sweeps,
    list_trials,
    reclaim_stale_sweeps,
    record_steps,
    release_sweep,
    replace_front,
    request_cancel,
    session_scope,
    sweep_summary,
    upgrade_database,
    upsert_trial,
)
from storage.engine import normalize_url
from storage.migrate import VERSION_TABLE, include_name, include_object
from tests.storage import _workers

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = {"name": "nightly", "search": {"alpha": [0.0, 1.0], "n_trials": 4}}


def _new_sweep(engine: Engine, *, name: str = "nightly", at: datetime | None = None) -> str:
    with session_scope(engine) as session:
        return create_sweep(session, name=name, spec=SPEC, n_trials=4, now=at).id


def _running_sweep(engine: Engine, *, worker_id: str = "w1", at: datetime = T0) -> str:
    sweep_id = _new_sweep(engine, at=at)
    with session_scope(engine) as session:
        claimed = claim_next_sweep(session, worker_id=worker_id, now=at)
    assert claimed is not None and claimed.id == sweep_id
    return sweep_id


def _trial(engine: Engine, sweep_id: str, number: int, **fields: object) -> Trial:
    with session_scope(engine) as session:
        return upsert_trial(
            session, sweep_id=sweep_id, number=number, weights=[0.5, 0.5], alpha=0.5, **fields
        )


def _count(engine: Engine, entity: type) -> int:
    with session_scope(engine, read_only=True) as session:
        return session.scalar(select(func.count()).select_from(entity)) or 0


@dataclass
class _StepDataclass:
    step: int
    reward: float
    kl: float


class _StepModel(BaseModel):
    step: int
    length_mean: float
    response_tokens: int


class TestStorageContract:
    """Repository behaviour every backend must provide."""

    def test_create_and_get_sweep(self, engine: Engine) -> None:
        with session_scope(engine) as session:
            created = create_sweep(session, name="nightly", spec=SPEC, n_trials=4)
        with session_scope(engine, read_only=True) as session:
            sweep = get_sweep(session, sweep_id=created.id)
        assert len(sweep.id) == 12
        assert sweep.status is SweepStatus.QUEUED
        assert sweep.spec == SPEC
        assert sweep.study_name == f"bai-sweep-{sweep.id}"
        assert sweep.n_trials == 4 and sweep.attempts == 0 and not sweep.cancel_requested
        assert sweep.created_at.tzinfo is not None
        assert abs(datetime.now(UTC) - sweep.created_at) < timedelta(minutes=5)
        assert sweep.started_at is None and sweep.worker_id is None

    def test_create_sweep_rejects_reused_study_name_and_bad_input(self, engine: Engine) -> None:
        with session_scope(engine) as session:
            create_sweep(session, name="a", spec=SPEC, n_trials=1, study_name="shared")
        with pytest.raises(ConflictError, match="shared"), session_scope(engine) as session:
            create_sweep(session, name="b", spec=SPEC, n_trials=1, study_name="shared")
        with pytest.raises(InvalidArgumentError), session_scope(engine) as session:
            create_sweep(session, name="c", spec=SPEC, n_trials=0)
        assert _count(engine, Trial) == 0
        with session_scope(engine, read_only=True) as session:
            assert list_sweeps(session).total == 1

    def test_unknown_ids_raise_not_found(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        calls = [
            lambda s: get_sweep(s, sweep_id="nope"),
            lambda s: heartbeat(s, sweep_id="nope", worker_id="w1"),
            lambda s: request_cancel(s, sweep_id="nope"),
            lambda s: finish_sweep(s, sweep_id="nope", status="failed"),
            lambda s: list_trials(s, sweep_id="nope"),
            lambda s: get_front(s, sweep_id="nope"),
            lambda s: sweep_summary(s, sweep_id="nope"),
            lambda s: get_trial(s, sweep_id=sweep_id, number=3),
            lambda s: upsert_trial(s, sweep_id="nope", number=0, weights=[1.0], alpha=0.5),
            lambda s: record_steps(s, sweep_id=sweep_id, trial_number=3, steps=[{"step": 0}]),
            lambda s: replace_front(
                s, sweep_id=sweep_id, members=[3], hypervolume=None, reference_point=None
            ),
        ]
        for call in calls:
            with pytest.raises(NotFoundError), session_scope(engine) as session:
                call(session)

    def test_list_sweeps_paginates_newest_first_and_filters(self, engine: Engine) -> None:
        ids = [
            _new_sweep(engine, name="even" if i % 2 == 0 else "odd", at=T0 + timedelta(minutes=i))
            for i in range(7)
        ]
        with session_scope(engine) as session:
            claim_next_sweep(session, worker_id="w1")  # the oldest: ids[0]
        with session_scope(engine, read_only=True) as session:
            first = list_sweeps(session, offset=0, limit=3)
            second = list_sweeps(session, offset=3, limit=3)
            last = list_sweeps(session, offset=6, limit=3)
            beyond = list_sweeps(session, offset=10, limit=3)
            evens = list_sweeps(session, name="even", limit=10)
            queued_evens = list_sweeps(session, name="even", status="queued", limit=10)
            running = list_sweeps(session, status=SweepStatus.RUNNING)
        newest_first = ids[::-1]
        assert [s.id for s in first.items] == newest_first[0:3]
        assert [s.id for s in second.items] == newest_first[3:6]
        assert [s.id for s in last.items] == newest_first[6:]
        assert beyond.items == [] and beyond.total == 7
        assert first.total == second.total == 7
        assert [s.id for s in evens.items] == [ids[6], ids[4], ids[2], ids[0]]
        assert [s.id for s in queued_evens.items] == [ids[6], ids[4], ids[2]]
        assert [s.id for s in running.items] == [ids[0]] and running.total == 1
        for bad in ({"limit": 0}, {"offset": -1}, {"status": "paused"}):
            with pytest.raises(InvalidArgumentError), session_scope(engine) as session:
                list_sweeps(session, **bad)

    def test_claim_takes_oldest_queued_first_then_none(self, engine: Engine) -> None:
        older = _new_sweep(engine, at=T0)
        newer = _new_sweep(engine, at=T0 + timedelta(seconds=1))
        with session_scope(engine) as session:
            first = claim_next_sweep(session, worker_id="w1", now=T0 + timedelta(minutes=1))
            second = claim_next_sweep(session, worker_id="w2")
            third = claim_next_sweep(session, worker_id="w3")
        assert first is not None and second is not None and third is None
        assert (first.id, second.id) == (older, newer)
        assert first.status is SweepStatus.RUNNING and first.worker_id == "w1"
        assert first.started_at == first.heartbeat_at == T0 + timedelta(minutes=1)
        assert first.attempts == 1
        with session_scope(engine, read_only=True) as session:
            assert get_sweep(session, sweep_id=older).worker_id == "w1"

    def test_claim_sweep_claims_one_particular_queued_sweep(self, engine: Engine) -> None:
        older = _new_sweep(engine, at=T0)
        newer = _new_sweep(engine, at=T0 + timedelta(seconds=1))
        with session_scope(engine) as session:
            claimed = claim_sweep(session, sweep_id=newer, worker_id="runner")
            again = claim_sweep(session, sweep_id=newer, worker_id="other")
            next_in_queue = claim_next_sweep(session, worker_id="w1")
        assert claimed is not None and claimed.id == newer and claimed.worker_id == "runner"
        assert claimed.status is SweepStatus.RUNNING and claimed.attempts == 1
        assert again is None
        assert next_in_queue is not None and next_in_queue.id == older

    def test_heartbeat_reports_ownership_and_cancel_requests(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine, worker_id="w1", at=T0)
        later = T0 + timedelta(seconds=30)
        with session_scope(engine) as session:
            mine = heartbeat(session, sweep_id=sweep_id, worker_id="w1", now=later)
            theirs = heartbeat(session, sweep_id=sweep_id, worker_id="w2", now=later)
        assert mine.owned and not mine.cancel_requested
        assert not theirs.owned and theirs.status is SweepStatus.RUNNING
        with session_scope(engine) as session:
            assert get_sweep(session, sweep_id=sweep_id).heartbeat_at == later
            cancelled = request_cancel(session, sweep_id=sweep_id)
        assert cancelled.status is SweepStatus.RUNNING and cancelled.cancel_requested
        with session_scope(engine) as session:
            after = heartbeat(session, sweep_id=sweep_id, worker_id="w1")
        assert after.owned and after.cancel_requested

    def test_reclaim_requeues_stale_sweeps_for_resume(self, engine: Engine) -> None:
        stale = _running_sweep(engine, worker_id="dead", at=T0)
        fresh = _running_sweep(engine, worker_id="alive", at=T0 + timedelta(seconds=1))
        stale_cancelled = _running_sweep(engine, worker_id="dead2", at=T0 + timedelta(seconds=2))
        now = T0 + timedelta(minutes=10)
        with session_scope(engine) as session:
            heartbeat(session, sweep_id=fresh, worker_id="alive", now=now)
            request_cancel(session, sweep_id=stale_cancelled)
            result = reclaim_stale_sweeps(session, stale_after=timedelta(minutes=5), now=now)
        assert result.requeued == [stale]
        assert result.cancelled == [stale_cancelled] and result.failed == []
        with session_scope(engine) as session:
            assert get_sweep(session, sweep_id=fresh).status is SweepStatus.RUNNING
            assert get_sweep(session, sweep_id=stale_cancelled).status is SweepStatus.CANCELLED
            old_owner = heartbeat(session, sweep_id=stale, worker_id="dead", now=now)
            resumed = claim_next_sweep(session, worker_id="w-new", now=now)
        assert not old_owner.owned
        assert resumed is not None and resumed.id == stale
        assert resumed.attempts == 2 and resumed.worker_id == "w-new"
        assert resumed.started_at == T0  # the first start is kept
        with session_scope(engine) as session:
            again = reclaim_stale_sweeps(
                session,
                stale_after=timedelta(minutes=5),
                max_attempts=2,
                now=now + timedelta(hours=1),
            )
        assert again.failed == [stale] and sorted(again.requeued) == [fresh]
        with session_scope(engine, read_only=True) as session:
            failed = get_sweep(session, sweep_id=stale)
        assert failed.status is SweepStatus.FAILED and "heart-beating" in (failed.error or "")

    def test_release_hands_a_sweep_back_to_the_queue(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine, worker_id="w1")
        with session_scope(engine) as session:
            assert not release_sweep(session, sweep_id=sweep_id, worker_id="w2")
            assert release_sweep(session, sweep_id=sweep_id, worker_id="w1")
            assert get_sweep(session, sweep_id=sweep_id).status is SweepStatus.QUEUED
            claimed = claim_next_sweep(session, worker_id="w2")
        assert claimed is not None and claimed.id == sweep_id

    def test_request_cancel_by_status(self, engine: Engine) -> None:
        queued = _new_sweep(engine)
        with session_scope(engine) as session:
            cancelled = request_cancel(session, sweep_id=queued)
            assert cancelled.status is SweepStatus.CANCELLED and cancelled.finished_at
            assert request_cancel(session, sweep_id=queued).status is SweepStatus.CANCELLED
            assert claim_next_sweep(session, worker_id="w1") is None
        done = _running_sweep(engine)
        with session_scope(engine) as session:
            finish_sweep(session, sweep_id=done, status=SweepStatus.SUCCEEDED)
        with pytest.raises(ConflictError, match="succeeded"), session_scope(engine) as session:
            request_cancel(session, sweep_id=done)

    def test_finish_sweep(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine, worker_id="w1")
        with pytest.raises(ConflictError, match="w1"), session_scope(engine) as session:
            finish_sweep(session, sweep_id=sweep_id, status="failed", worker_id="w2")
        with pytest.raises(InvalidArgumentError), session_scope(engine) as session:
            finish_sweep(session, sweep_id=sweep_id, status="running")
        with session_scope(engine) as session:
            failed = finish_sweep(
                session, sweep_id=sweep_id, status="failed", error="boom", worker_id="w1"
            )
        assert failed.status is SweepStatus.FAILED and failed.error == "boom"
        assert failed.finished_at is not None
        with pytest.raises(ConflictError, match="already failed"), session_scope(engine) as s:
            finish_sweep(s, sweep_id=sweep_id, status="succeeded")

    def test_upsert_trial_is_idempotent_and_never_regresses(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        first = _trial(engine, sweep_id, 0, seed_kind="paper", actor_path="/tmp/a")
        again = _trial(engine, sweep_id, 0)
        assert again.id == first.id and again.state is TrialState.RUNNING
        assert again.seed_kind is SeedKind.PAPER and again.is_seed
        assert again.actor_path == "/tmp/a"  # None keeps the stored value
        assert again.started_at == first.started_at
        done = _trial(
            engine,
            sweep_id,
            0,
            state=TrialState.COMPLETE,
            objectives={"stability": 0.8, "benchmark": float("nan")},
            stability={"length_retention": 0.9},
            benchmarks={"bai_facts_mc": 0.4},
            duration_s=12.5,
            finished_at=T0,
        )
        assert done.state is TrialState.COMPLETE
        assert done.objectives == {"stability": 0.8, "benchmark": None}
        assert done.params == {"weights": [0.5, 0.5], "alpha": 0.5}
        late = _trial(engine, sweep_id, 0, state=TrialState.RUNNING)
        assert late.state is TrialState.COMPLETE and late.finished_at == T0
        assert _count(engine, Trial) == 1
        with pytest.raises(InvalidArgumentError), session_scope(engine) as session:
            upsert_trial(session, sweep_id=sweep_id, number=1, weights=[1.0], alpha=0, state="x")
        with pytest.raises(InvalidArgumentError), session_scope(engine) as session:
            upsert_trial(session, sweep_id=sweep_id, number=1, weights=[float("nan")], alpha=0)

    def test_record_steps_redelivery_does_not_duplicate(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        _trial(engine, sweep_id, 0)
        with session_scope(engine) as session:
            written = record_steps(
                session,
                sweep_id=sweep_id,
                trial_number=0,
                steps=[
                    {"step": 0, "length_mean": 40.0, "kl": float("nan"), "note": "x"},
                    _StepDataclass(step=1, reward=0.5, kl=0.01),
                    _StepModel(step=2, length_mean=38.0, response_tokens=300),
                ],
            )
        assert written == 3
        with session_scope(engine) as session:
            again = record_steps(
                session,
                sweep_id=sweep_id,
                trial_number=0,
                steps=[{"step": 1, "reward": 0.5, "kl": 0.01}, {"step": 1, "reward": 0.7}],
            )
        assert again == 1
        with session_scope(engine, read_only=True) as session:
            trial = get_trial(session, sweep_id=sweep_id, number=0)
        assert [step.step for step in trial.steps] == [0, 1, 2]
        assert trial.steps[0].kl is None and trial.steps[0].extra == {"note": "x"}
        assert trial.steps[1].reward == 0.7  # the last delivery wins
        assert trial.steps[2].metrics()["response_tokens"] == 300
        assert _count(engine, TrialStep) == 3
        with pytest.raises(InvalidArgumentError), session_scope(engine) as session:
            record_steps(session, sweep_id=sweep_id, trial_number=0, steps=[{"reward": 1.0}])

    def test_list_trials_paginates_by_number(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        for number in (3, 0, 2, 1, 4):
            _trial(engine, sweep_id, number, state="complete" if number % 2 else "running")
        with session_scope(engine, read_only=True) as session:
            page = list_trials(session, sweep_id=sweep_id, offset=1, limit=2)
            complete = list_trials(session, sweep_id=sweep_id, state="complete")
        assert [t.number for t in page.items] == [1, 2] and page.total == 5
        assert [t.number for t in complete.items] == [1, 3] and complete.total == 2

    def test_replace_front_is_atomic_and_whole(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        for number in range(4):
            _trial(engine, sweep_id, number, state="complete", objectives={"s": number})
        with session_scope(engine, read_only=True) as session:
            assert get_front(session, sweep_id=sweep_id) is None
        with session_scope(engine) as session:
            first = replace_front(
                session, sweep_id=sweep_id, members=[2, 0], hypervolume=0.3, reference_point=[0, 0]
            )
        assert [m.trial_number for m in first.members] == [2, 0] and first.revision == 1
        with pytest.raises(NotFoundError), session_scope(engine) as session:
            replace_front(
                session, sweep_id=sweep_id, members=[1, 9], hypervolume=0.9, reference_point=None
            )
        with session_scope(engine) as session:
            second = replace_front(
                session, sweep_id=sweep_id, members=[3], hypervolume=0.5, reference_point=[0, 0]
            )
        with session_scope(engine, read_only=True) as session:
            stored = get_front(session, sweep_id=sweep_id)
        assert stored == second
        assert [m.trial_number for m in stored.members] == [3]
        assert stored.members[0].objectives == {"s": 3}
        assert stored.hypervolume == 0.5 and stored.reference_point == [0.0, 0.0]
        assert stored.revision == 2

    def test_sweep_summary(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        states = ["complete", "complete", "failed", "pruned", "running", "running"]
        for number, state in enumerate(states):
            _trial(engine, sweep_id, number, state=state)
        with session_scope(engine) as session:
            record_steps(
                session,
                sweep_id=sweep_id,
                trial_number=4,
                steps=[{"step": s, "length_mean": 50.0 - s} for s in range(3)],
            )
            replace_front(
                session, sweep_id=sweep_id, members=[1], hypervolume=0.2, reference_point=[0, 0]
            )
        with session_scope(engine, read_only=True) as session:
            summary = sweep_summary(session, sweep_id=sweep_id)
        assert summary.sweep.id == sweep_id and summary.sweep.status is SweepStatus.RUNNING
        assert summary.trial_counts == {
            TrialState.RUNNING: 2,
            TrialState.COMPLETE: 2,
            TrialState.FAILED: 1,
            TrialState.PRUNED: 1,
        }
        assert summary.n_finished == 4
        assert summary.front is not None and summary.front.members[0].trial_number == 1
        assert [p.number for p in summary.running] == [4, 5]
        latest = summary.running[0].latest_step
        assert latest is not None and latest.step == 2 and latest.length_mean == 48.0
        assert summary.running[1].latest_step is None

    def test_latest_successful_sweep(self, engine: Engine) -> None:
        ids = []
        for minutes in (1, 2, 3):
            sweep_id = _running_sweep(engine, at=T0 + timedelta(minutes=minutes))
            with session_scope(engine) as session:
                finish_sweep(
                    session,
                    sweep_id=sweep_id,
                    status="failed" if minutes == 3 else "succeeded",
                    now=T0 + timedelta(hours=minutes),
                )
            ids.append(sweep_id)
        with session_scope(engine, read_only=True) as session:
            latest = latest_successful_sweep(session, name="nightly")
            earlier = latest_successful_sweep(
                session, name="nightly", before=T0 + timedelta(hours=2)
            )
            excluded = latest_successful_sweep(session, name="nightly", exclude_id=ids[1])
            other = latest_successful_sweep(session, name="other")
        assert latest is not None and latest.id == ids[1]
        assert earlier is not None and earlier.id == ids[0]
        assert excluded is not None and excluded.id == ids[0]
        assert other is None

    def test_fail_running_trials(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        for number, state in enumerate(["complete", "running", "running"]):
            _trial(engine, sweep_id, number, state=state)
        with session_scope(engine) as session:
            failed = fail_running_trials(session, sweep_id=sweep_id, error="worker lost")
        assert failed == [1, 2]
        with session_scope(engine, read_only=True) as session:
            trial = get_trial(session, sweep_id=sweep_id, number=1)
        assert trial.state is TrialState.FAILED and trial.error == "worker lost"

    def test_exception_inside_scope_leaves_no_partial_trial(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        with pytest.raises(RuntimeError, match="crash"), session_scope(engine) as session:
            upsert_trial(session, sweep_id=sweep_id, number=0, weights=[1.0], alpha=0.5)
            record_steps(session, sweep_id=sweep_id, trial_number=0, steps=[{"step": 0}])
            raise RuntimeError("crash")
        assert _count(engine, Trial) == 0 and _count(engine, TrialStep) == 0

    def test_integrity_errors_become_conflict_errors(self, engine: Engine) -> None:
        sweep_id = _running_sweep(engine)
        _trial(engine, sweep_id, 0)
        with pytest.raises(ConflictError), session_scope(engine) as session:
            session.add(
                Trial(sweep_id=sweep_id, number=0, weights=[1.0], alpha=0.1, state="running")
            )
        assert _count(engine, Trial) == 1

    def test_killed_process_mid_transaction_leaves_no_partial_trial(
        self, engine: Engine, database_url: str
    ) -> None:
        sweep_id = _running_sweep(engine)
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        process = context.Process(
            target=_workers.die_mid_transaction, args=(database_url, sweep_id, ready)
        )
        process.start()
        try:
            assert ready.wait(timeout=120), "the writer never reached its flush"
        finally:
            process.kill()
            process.join(timeout=30)
        assert _count(engine, Trial) == 0 and _count(engine, TrialStep) == 0
        # The dead writer's locks are gone: the same trial can be written now.
        _trial(engine, sweep_id, 7)
        with session_scope(engine) as session:
            record_steps(session, sweep_id=sweep_id, trial_number=7, steps=[{"step": 0}])
        assert _count(engine, TrialStep) == 1

    def test_processes_claim_each_sweep_exactly_once(
        self, engine: Engine, database_url: str
    ) -> None:
        sweep_ids = {_new_sweep(engine, at=T0 + timedelta(seconds=i)) for i in range(20)}
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(4), context.Queue()
        processes = [
            context.Process(
                target=_workers.claim_until_empty, args=(database_url, f"w{i}", barrier, results)
            )
            for i in range(4)
        ]
        for process in processes:
            process.start()
        claims = dict(_collect(results, len(processes)))
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        claimed = [sweep_id for ids in claims.values() for sweep_id in ids]
        assert sorted(claimed) == sorted(sweep_ids)  # every sweep once, none twice
        with session_scope(engine, read_only=True) as session:
            running = list_sweeps(session, status="running", limit=100).items
        assert {s.id: s.worker_id for s in running} == {
            sweep_id: worker for worker, ids in claims.items() for sweep_id in ids
        }
        assert all(s.attempts == 1 for s in running)

    def test_concurrent_step_writers_lose_no_rows(self, engine: Engine, database_url: str) -> None:
        sweep_id = _running_sweep(engine)
        _trial(engine, sweep_id, 0)
        # Three writers, overlapping ranges: 0-29, 20-49, 40-69 -> 70 distinct steps.
        ranges = [list(range(start, start + 30)) for start in (0, 20, 40)]
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(len(ranges)), context.Queue()
        processes = [
            context.Process(
                target=_workers.write_steps,
                args=(database_url, sweep_id, 0, steps, barrier, results),
            )
            for steps in ranges
        ]
        for process in processes:
            process.start()
        written = _collect(results, len(processes))
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        assert written == [30, 30, 30]
        with session_scope(engine, read_only=True) as session:
            trial = get_trial(session, sweep_id=sweep_id, number=0)
        assert [step.step for step in trial.steps] == list(range(70))
        assert all(step.reward == float(step.step) for step in trial.steps)

    def test_readers_see_a_whole_front_while_writers_replace_it(
        self, engine: Engine, database_url: str
    ) -> None:
        sweep_id = _running_sweep(engine)
        for number in range(3):
            _trial(engine, sweep_id, number, state="complete")
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(3), context.Queue()
        writers = [
            context.Process(
                target=_workers.replace_fronts,
                args=(database_url, sweep_id, 25, barrier, results),
            )
            for _ in range(2)
        ]
        for writer in writers:
            writer.start()
        barrier.wait(timeout=120)
        while any(writer.is_alive() for writer in writers):
            with session_scope(engine, read_only=True) as session:
                front = get_front(session, sweep_id=sweep_id)
            if front is not None:
                members = tuple(member.trial_number for member in front.members)
                assert members in _workers.FRONTS, f"a mixed front: {members}"
                assert front.hypervolume == _workers.FRONTS[members]
        assert _collect(results, len(writers)) == [25, 25]
        for writer in writers:
            writer.join(timeout=60)
            assert writer.exitcode == 0
        with session_scope(engine, read_only=True) as session:
            final = get_front(session, sweep_id=sweep_id)
        assert final is not None and final.revision == 50

    def test_migrations_upgrade_an_empty_database_once_and_leave_optuna_alone(
        self, empty_database_url: str
    ) -> None:
        url = normalize_url(empty_database_url).render_as_string(hide_password=False)
        engine = create_engine_for(url)
        assert current_revision(engine) is None
        optuna_storage = optuna.storages.RDBStorage(url)  # Optuna's tables come first
        assert upgrade_database(engine) == (None, head_revision())
        assert upgrade_database(engine) == (head_revision(), head_revision())
        tables = set(inspect(engine).get_table_names())
        assert {"bai_sweeps", "bai_trials", "bai_trial_steps", "bai_alembic_version"} <= tables
        assert {"studies", "trials", "alembic_version"} <= tables  # Optuna's, untouched
        # The migration creates exactly what the models declare; Optuna's tables are ignored.
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "include_name": include_name,
                    "include_object": include_object,
                    "compare_type": True,
                    "version_table": VERSION_TABLE,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
        study = optuna.create_study(storage=optuna_storage, study_name="bai-sweep-x")
        study.optimize(lambda trial: trial.suggest_float("alpha", 0, 1), n_trials=2)
        assert len(optuna.load_study(study_name="bai-sweep-x", storage=url).trials) == 2
        optuna_storage.remove_session()
        optuna_storage.engine.dispose()

    def test_processes_starting_together_migrate_once(self, empty_database_url: str) -> None:
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(3), context.Queue()
        processes = [
            context.Process(target=_workers.migrate, args=(empty_database_url, barrier, results))
            for _ in range(3)
        ]
        for process in processes:
            process.start()
        revisions = _collect(results, len(processes))
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        assert revisions == [head_revision()] * 3
        engine = init_database(empty_database_url)
        with session_scope(engine) as session:
            create_sweep(session, name="after", spec=SPEC, n_trials=1)


def _collect(results: multiprocessing.Queue, n: int) -> list:
    collected = []
    for _ in range(n):
        try:
            collected.append(results.get(timeout=180))
        except queue.Empty:
            pytest.fail(f"only {len(collected)} of {n} processes reported back")
    return collected
