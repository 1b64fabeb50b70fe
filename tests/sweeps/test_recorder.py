"""The recorder: ordered, buffered writes that wait out a database outage (real SQLite)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storage import create_sweep, get_front, get_trial, init_database, session_scope
from storage.exceptions import DatabaseUnavailableError
from sweeps import _recorder
from sweeps._recorder import Recorder, RecorderError

SPEC = {
    "name": "rec",
    "models": {"base": "/b", "sft": ["/s1", "/s2"], "reward": "/r", "prompts": "/p"},
}


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Any, str]:
    engine = init_database(f"sqlite:///{tmp_path / 'rec.sqlite'}")
    with session_scope(engine) as session:
        return engine, create_sweep(session, name="rec", spec=SPEC, n_trials=2).id


class Outage:
    """A fake outage, named as such: the first ``failures`` scopes raise 'unavailable'."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, failures: int) -> None:
        self.failures = failures
        real = _recorder.session_scope

        @contextmanager
        def flaky(engine: Any, **kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise DatabaseUnavailableError("database unavailable: connection refused")
            with real(engine, **kwargs) as session:
                yield session

        monkeypatch.setattr(_recorder, "session_scope", flaky)
        monkeypatch.setattr(_recorder.time, "sleep", lambda _s: None)


def _record_trial(recorder: Recorder, number: int, value: float) -> None:
    now = datetime.now(UTC)
    recorder.trial_started(number, weights=(0.5, 0.5), alpha=0.5, seed_kind=None, started_at=now)
    recorder.steps(number, [{"step": 1, "length_mean": 10.0}, {"step": 2, "length_mean": 9.0}])
    recorder.trial_finished(
        number,
        weights=(0.5, 0.5),
        alpha=0.5,
        state="complete",
        objectives={"stability": value, "benchmark": value},
        finished_at=now,
        node="127.0.0.1/abc",
    )


def test_writes_wait_out_an_outage_in_order(sweep: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, sweep_id = sweep
    outage = Outage(monkeypatch, failures=25)
    recorder = Recorder(engine, sweep_id)
    _record_trial(recorder, 0, 0.4)
    _record_trial(recorder, 1, 0.6)
    recorder.close()
    assert outage.failures == 0 and recorder.error is None
    with session_scope(engine, read_only=True) as session:
        trials = [get_trial(session, sweep_id=sweep_id, number=n) for n in (0, 1)]
        front = get_front(session, sweep_id=sweep_id)
    assert [t.state.value for t in trials] == ["complete", "complete"]
    assert all([s.step for s in t.steps] == [1, 2] for t in trials)
    assert trials[0].node == "127.0.0.1/abc"
    assert [m.trial_number for m in front.members] == [1]
    assert recorder.hypervolume == front.hypervolume


def test_a_redelivered_write_changes_nothing(sweep: tuple) -> None:
    engine, sweep_id = sweep
    recorder = Recorder(engine, sweep_id)
    _record_trial(recorder, 0, 0.5)
    _record_trial(recorder, 0, 0.5)
    recorder.close()
    with session_scope(engine, read_only=True) as session:
        trial = get_trial(session, sweep_id=sweep_id, number=0)
    assert [s.step for s in trial.steps] == [1, 2] and trial.objectives["stability"] == 0.5


def test_gives_up_after_the_retry_window_and_refuses_more(
    sweep: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, sweep_id = sweep
    Outage(monkeypatch, failures=10**9)
    recorder = Recorder(engine, sweep_id, retry_for=0.0)
    _record_trial(recorder, 0, 0.5)
    with pytest.raises(RecorderError, match="stayed unavailable"):
        recorder.flush()
    with pytest.raises(RecorderError):
        _record_trial(recorder, 1, 0.5)


def test_a_full_buffer_makes_the_producer_wait_not_drop(sweep: tuple) -> None:
    engine, sweep_id = sweep
    recorder = Recorder(engine, sweep_id, max_pending=2)
    now = datetime.now(UTC)
    recorder.trial_started(0, weights=(0.5, 0.5), alpha=0.5, seed_kind=None, started_at=now)
    for step in range(1, 41):
        recorder.steps(0, [{"step": step, "reward_mean": float(step)}])
    recorder.close()
    with session_scope(engine, read_only=True) as session:
        assert len(get_trial(session, sweep_id=sweep_id, number=0).steps) == 40


def test_a_lost_sweep_is_never_written(sweep: tuple) -> None:
    engine, sweep_id = sweep
    recorder = Recorder(engine, sweep_id, may_write=lambda: False)
    _record_trial(recorder, 0, 0.5)
    recorder.close()
    with session_scope(engine, read_only=True) as session:
        assert get_front(session, sweep_id=sweep_id) is None


def test_attached_jobs_run_in_order_after_the_writes_and_never_fail_the_run(
    sweep: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    engine, sweep_id = sweep
    recorder = Recorder(engine, sweep_id)
    seen: list[str] = []

    def after_trial() -> None:
        with session_scope(engine, read_only=True) as session:
            seen.append(get_trial(session, sweep_id=sweep_id, number=0).state.value)

    def broken() -> None:
        raise RuntimeError("no picture today")

    _record_trial(recorder, 0, 0.5)
    recorder.attach("curve artifact", after_trial)
    recorder.attach("curve artifact", broken)
    recorder.attach("curve artifact", lambda: seen.append("after the broken one"))
    recorder.close()
    assert seen == ["complete", "after the broken one"]
    assert recorder.error is None
    assert "curve artifact failed (skipped)" in caplog.text
