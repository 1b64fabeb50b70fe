"""Fixtures of the sweep tests: running the CLI, and one killed-then-resumed nightly run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage import create_engine_for, list_sweeps, list_trials, session_scope
from tests.demo_specs import write_demo_spec

BAI_SWEEP = str(Path(sys.executable).with_name("bai-sweep"))


def run_cli(args: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``bai-sweep`` to completion (10 minutes at most)."""
    return subprocess.run(
        [BAI_SWEEP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


@dataclass(frozen=True)
class ResumedSweep:
    """A ``bai-sweep run`` killed with SIGKILL after its first finished trial, then re-run."""

    directory: Path
    database_url: str
    env: dict[str, str]
    spec_file: Path
    sweep_id: str
    #: Trial number -> objectives of the trials complete when the first process was killed.
    complete_before_kill: dict[int, dict]
    running_at_kill: list[int]
    rerun: subprocess.CompletedProcess


def _complete_trials(url: str) -> tuple[str | None, dict[int, dict], list[int]]:
    engine = create_engine_for(url)
    try:
        with session_scope(engine, read_only=True) as session:
            sweeps = list_sweeps(session).items
            if not sweeps:
                return None, {}, []
            trials = list_trials(session, sweep_id=sweeps[0].id).items
            complete = {t.number: t.objectives for t in trials if t.state.value == "complete"}
            running = [t.number for t in trials if t.state.value == "running"]
            return sweeps[0].id, complete, running
    except Exception:  # the first process may not have created the tables yet
        return None, {}, []


@pytest.fixture(scope="session")
def resumed_sweep(demo_world: Any, tmp_path_factory: pytest.TempPathFactory) -> ResumedSweep:
    """Run a 4-trial demo sweep, SIGKILL it once a trial finished, run it again to the end."""
    directory = tmp_path_factory.mktemp("nightly")
    url = f"sqlite:///{directory / 'sweeps.sqlite'}"
    # Two probe seeds per candidate: the real small sweep with repeats.
    spec_file = write_demo_spec(
        demo_world,
        directory / "sweep.yaml",
        name="test-nightly",
        export_front=True,
        probe={"repeats": 2},
    )
    env = {**os.environ, "BAI_SWEEP_DATA_DIR": str(directory / "data")}
    args = ["run", str(spec_file), "--db", url, "--report-dir", str(directory / "report")]
    log = (directory / "first-run.log").open("w")
    first = subprocess.Popen(
        [BAI_SWEEP, *args],
        env=env,
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 480
    sweep_id, complete, running = None, {}, []
    try:
        while time.monotonic() < deadline and first.poll() is None:
            sweep_id, complete, running = _complete_trials(url)
            if complete:
                break
            time.sleep(0.5)
    finally:
        # The whole process group: the driver and the Ray processes it started.
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    assert complete, (directory / "first-run.log").read_text()[-3000:]
    assert sweep_id is not None
    rerun = run_cli(args, env=env, cwd=directory)
    return ResumedSweep(directory, url, env, spec_file, sweep_id, complete, running, rerun)
