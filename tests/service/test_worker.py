"""The worker loop with fake sweep runners (the real runner: test_flow.py, test_cluster.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from service.settings import Settings
from service.worker import Worker
from storage import (
    LeaseState,
    SweepStatus,
    claim_next_sweep,
    create_sweep,
    get_sweep,
    heartbeat,
    init_database,
    session_scope,
)
from storage.exceptions import DatabaseUnavailableError
from storage.models import utc_now


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path, worker_poll_interval=0.05, heartbeat_interval=0.1, stale_after=1.0
    )


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return init_database(settings.resolved_database_url)


def _queue(engine: Engine, name: str = "w") -> str:
    with session_scope(engine) as session:
        return create_sweep(session, name=name, spec={"name": name}, n_trials=1).id


def _status(engine: Engine, sweep_id: str) -> Any:
    with session_scope(engine) as session:
        return get_sweep(session, sweep_id=sweep_id)


class FakeRunner:
    """A fake runner, named as such: records its calls and ends each run as ``behaviour`` says."""

    def __init__(self, engine: Engine, behaviour: Callable[[str, dict], str]) -> None:
        self.engine = engine
        self.behaviour = behaviour
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(kwargs)
        self.thread = threading.current_thread()
        status = self.behaviour(kwargs["lease"].sweep_id, kwargs)
        return SimpleNamespace(status=status, error=None)


def test_runs_queued_sweeps_oldest_first(settings: Settings, engine: Engine) -> None:
    first, second = _queue(engine, "a"), _queue(engine, "b")
    fake = FakeRunner(engine, lambda sweep_id, kwargs: "succeeded")
    worker = Worker(settings, engine, worker_id="w1", run_sweep=fake)
    assert worker.run(idle_exit=True) == 2
    assert [call["lease"].sweep_id for call in fake.calls] == [first, second]
    call = fake.calls[0]
    assert call["lease"].engine is engine and call["lease"].worker_id == "w1"
    assert call["ray_address"] is None and call["data_dir"] == settings.data_dir
    assert call["lease"].heartbeat_interval == settings.heartbeat_interval
    assert call["lease"].state is LeaseState.FINISHED  # settled by the worker
    assert fake.thread is not threading.main_thread()  # signals stay with the main thread
    assert _status(engine, first).status is SweepStatus.SUCCEEDED


def test_a_crashing_runner_fails_the_sweep_and_the_worker_goes_on(
    settings: Settings, engine: Engine
) -> None:
    broken, fine = _queue(engine, "broken"), _queue(engine, "fine")

    def behaviour(sweep_id: str, kwargs: dict) -> str:
        if sweep_id == broken:
            raise RuntimeError("boom")
        return "succeeded"

    worker = Worker(settings, engine, run_sweep=FakeRunner(engine, behaviour))
    assert worker.run(idle_exit=True) == 2
    failed = _status(engine, broken)
    assert failed.status is SweepStatus.FAILED and "RuntimeError: boom" in failed.error
    assert _status(engine, fine).status is SweepStatus.SUCCEEDED


def test_stop_hands_the_running_sweep_back(settings: Settings, engine: Engine) -> None:
    sweep_id = _queue(engine)
    worker = Worker(settings, engine, worker_id="w1")

    def behaviour(sweep_id: str, kwargs: dict) -> str:
        worker.stop()  # e.g. SIGTERM while the sweep runs
        assert kwargs["lease"].should_stop is True
        return "stopped"

    worker._run_sweep = FakeRunner(engine, behaviour)
    assert worker.run() == 1
    released = _status(engine, sweep_id)
    assert released.status is SweepStatus.QUEUED and released.worker_id is None
    assert worker.run() == 0  # stopped: claims nothing more


def test_reclaims_stale_sweeps_and_resumes_them(settings: Settings, engine: Engine) -> None:
    sweep_id = _queue(engine)
    with session_scope(engine) as session:
        claim_next_sweep(session, worker_id="dead", now=utc_now() - timedelta(seconds=30))
    fake = FakeRunner(engine, lambda sweep_id, kwargs: "succeeded")
    worker = Worker(settings, engine, worker_id="alive", run_sweep=fake)
    assert worker.run_one() == sweep_id
    resumed = _status(engine, sweep_id)
    assert resumed.status is SweepStatus.SUCCEEDED and resumed.attempts == 2


def test_fresh_heartbeats_are_not_reclaimed(settings: Settings, engine: Engine) -> None:
    sweep_id = _queue(engine)
    with session_scope(engine) as session:
        claim_next_sweep(session, worker_id="busy")
        heartbeat(session, sweep_id=sweep_id, worker_id="busy")
    worker = Worker(settings, engine, run_sweep=FakeRunner(engine, lambda *_: "succeeded"))
    assert worker.run_one() is None
    assert _status(engine, sweep_id).worker_id == "busy"


def test_gives_up_after_max_attempts(settings: Settings, engine: Engine) -> None:
    sweep_id = _queue(engine)
    settings = settings.model_copy(update={"max_attempts": 1})
    with session_scope(engine) as session:
        claim_next_sweep(session, worker_id="dead", now=utc_now() - timedelta(seconds=30))
    worker = Worker(settings, engine, run_sweep=FakeRunner(engine, lambda *_: "succeeded"))
    assert worker.run_one() is None
    assert _status(engine, sweep_id).status is SweepStatus.FAILED


def test_survives_an_unavailable_database(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id = _queue(engine)
    worker = Worker(settings, engine, run_sweep=FakeRunner(engine, lambda *_: "succeeded"))
    real_claim, failures = worker.claim, [DatabaseUnavailableError("database unavailable: down")]

    def flaky_claim() -> Any:
        if failures:
            raise failures.pop()
        return real_claim()

    monkeypatch.setattr(worker, "claim", flaky_claim)
    assert worker.run(max_sweeps=1) == 1
    assert _status(engine, sweep_id).status is SweepStatus.SUCCEEDED


@pytest.mark.parametrize("command", [["worker", "--once"], ["serve"], ["run", "spec.yaml"]])
def test_ray_client_addresses_are_refused_before_work_starts(
    command: list[str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from service.cli import app
    from tests.demo_specs import write_demo_spec

    monkeypatch.setenv("BAI_SWEEP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    world = SimpleNamespace(base="/b", sfts=["/s1", "/s2"], reward_rule="bai_world", prompts="/p")
    write_demo_spec(world, tmp_path / "spec.yaml", name="refused")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "ray://" in result.output and "GCS address" in result.output
    assert not (tmp_path / "bai-sweep.db").exists()  # refused before any work
