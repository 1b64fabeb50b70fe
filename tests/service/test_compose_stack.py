"""docker-compose.yml run as local processes: the topology, without a Docker engine.

Each service's own ``command`` runs with its own compose ``environment`` (interpolated like
compose does), with what a container would see mapped onto this machine:

- hostnames to loopback (``ray-head`` -> 127.0.0.1), ``postgres`` to a fresh database on the
  local PostgreSQL server (its URL replaces the compose one), published ports to free ones;
- the volumes ``/data`` and ``/models`` to a temporary directory and the demo world;
- the Ray nodes (``ray-head``, ``ray-node`` and the node the ``worker`` joins as before it
  starts) get flags that keep them apart from any other Ray on this machine (own ports and
  ``--temp-dir``; one CPU each for the first two so trials spread over both, none for the
  worker's). On one host this cannot show that the worker needs a node of its own (a driver
  attaches to a raylet on its host; here all share one); the command is still run as written.

Then: ``migrate`` ran ``db upgrade``, the API is healthy, a sweep POSTed with the token runs on
the cluster (every trial on a node, both nodes used, every step and the front recorded), the
dashboard lists its study, and a cancel stops a sweep on the cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from storage import (
    create_engine_for,
    current_revision,
    get_trial,
    head_revision,
    list_trials,
    session_scope,
)
from tests.demo_specs import FAST_PROBE, demo_spec
from tests.ray_cluster import NO_TOKEN_AUTH, LocalRayCluster, free_port
from tests.storage.conftest import fresh_postgres_database, postgres_server_url  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
TOKEN = "compose-test-token-0123456789abcdef"
BIN = Path(sys.executable).parent
#: Faster than the defaults so that a cancel is seen within a second (timing only).
TIMING = {"BAI_SWEEP_HEARTBEAT_INTERVAL": "1", "BAI_SWEEP_WORKER_POLL_INTERVAL": "0.5"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", replace, value)


@dataclass
class Stack:
    api: str
    dashboard: str
    database_url: str
    world: Any
    cluster: LocalRayCluster
    processes: dict[str, subprocess.Popen]
    logs: Path

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()[-3000:]

    def spec(self, name: str, **overrides: Any) -> dict[str, Any]:
        return demo_spec(self.world, name=name, **overrides)

    def wait_status(self, client: httpx.Client, sweep_id: str, statuses: set[str]) -> dict:
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            detail = client.get(f"/sweeps/{sweep_id}").json()
            if detail["status"] in statuses:
                return detail
            assert self.processes["worker"].poll() is None, self.log("worker")
            time.sleep(1.0)
        raise AssertionError(f"sweep {sweep_id} stuck: {detail}\n{self.log('worker')}")


def _service(name: str) -> dict[str, Any]:
    return COMPOSE["services"][name]


def _environment(name: str, to_host: Any, base: dict[str, str]) -> dict[str, str]:
    """The service's compose environment, interpolated, each value mapped by ``to_host``."""
    env = dict(base)
    for key, value in (_service(name).get("environment") or {}).items():
        env[key] = to_host(
            key, interpolate(str(value), {**os.environ, "BAI_SWEEP_API_TOKEN": TOKEN})
        )
    return env


def _command(name: str, replacements: dict[str, str]) -> list[str]:
    return _argv([str(part) for part in _service(name)["command"]], replacements)


def _steps(name: str, replacements: dict[str, str]) -> list[list[str]]:
    """The commands of a service's ``sh -c "A && exec B"``: ``[A, B]``."""
    shell, flag, script = _service(name)["command"]
    assert (shell, flag) == ("sh", "-c"), _service(name)["command"]
    steps = [shlex.split(step) for step in script.split(" && ")]
    return [_argv(step[1:] if step[0] == "exec" else step, replacements) for step in steps]


def _argv(argv: list[str], replacements: dict[str, str]) -> list[str]:
    out = []
    for part in argv:
        for old, new in replacements.items():
            part = part.replace(old, new)
        out.append(part)
    if out[0] in ("bai-sweep", "ray"):
        out[0] = str(BIN / out[0])
    return out


@pytest.fixture(scope="module")
def stack(
    demo_world: Any,
    postgres_server_url: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose")
    logs = root / "logs"
    logs.mkdir()
    data = root / "data"
    models = Path(demo_world.root).resolve()
    gcs_port, api_port, dashboard_port = free_port(), free_port(), free_port()
    with fresh_postgres_database(postgres_server_url) as database_url:
        base = {**os.environ, **TIMING, **NO_TOKEN_AUTH}
        base.pop("RAY_ADDRESS", None)
        volumes = {"/data": str(data), "/models": str(models)}

        def mapping(key: str, value: str) -> str:
            # What a container sees, mapped onto this machine.
            if key == "BAI_SWEEP_DATABASE_URL":
                assert "@postgres:5432/" in value, value
                return database_url
            if key == "RAY_ADDRESS":
                return value.replace("ray-head:6379", f"127.0.0.1:{gcs_port}")
            return volumes.get(value, value)

        replacements = {
            "ray-head:6379": f"127.0.0.1:{gcs_port}",
            "--port=6379": f"--port={gcs_port}",
            "0.0.0.0": "127.0.0.1",
        }
        processes: dict[str, subprocess.Popen] = {}

        def start(name: str, argv: list[str]) -> None:
            log = (logs / f"{name}.log").open("w")
            processes[name] = subprocess.Popen(
                argv,
                env=_environment(name, mapping, base),
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()

        migrate = subprocess.run(
            _command("migrate", replacements),
            env=_environment("migrate", mapping, base),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        # The worker's own Ray node (no CPUs) is the cluster's third; run in the foreground
        # (--block) so that the cluster owns its session and stops it.
        join, worker = _steps("worker", replacements)
        cluster = LocalRayCluster(
            root / "ray", nodes=[{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 0}]
        )
        cluster.port = gcs_port
        cluster.env = _environment("ray-head", mapping, base)
        try:
            cluster.start(
                [
                    _command("ray-head", replacements),
                    _command("ray-node", replacements),
                    [*join, "--block"],
                ]
            )
            api = _command("api", replacements)
            api[api.index("--port") + 1] = str(api_port)
            start("api", api)
            dashboard = _command("dashboard", replacements)
            dashboard[dashboard.index("--port") + 1] = str(dashboard_port)
            start("dashboard", dashboard)
            start("worker", worker)
            api_url = f"http://127.0.0.1:{api_port}"
            _wait_http(f"{api_url}/healthz", processes["api"], logs / "api.log")
            yield Stack(
                api=api_url,
                dashboard=f"http://127.0.0.1:{dashboard_port}",
                database_url=database_url,
                world=demo_world,
                cluster=cluster,
                processes=processes,
                logs=logs,
            )
        finally:
            for process in processes.values():
                _stop(process)
            cluster.stop()


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_migrated_and_healthy(stack: Stack) -> None:
    engine = create_engine_for(stack.database_url)
    assert current_revision(engine) == head_revision()
    health = httpx.get(f"{stack.api}/healthz", timeout=10).json()
    assert health["status"] == "ok"


def test_a_sweep_posted_with_the_token_runs_on_both_nodes(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=stack.api, timeout=30) as client:
        spec = stack.spec("compose-sweep")
        assert client.post("/sweeps", json=spec).status_code == 401
        created = client.post("/sweeps", json=spec, headers=headers)
        assert created.status_code == 202, created.text
        sweep_id = created.json()["id"]
        detail = stack.wait_status(client, sweep_id, {"succeeded", "failed", "cancelled"})
        assert detail["status"] == "succeeded", (detail, stack.log("worker"))
        pareto = client.get(f"/sweeps/{sweep_id}/pareto")
        assert pareto.status_code == 200 and pareto.json()["members"]
        listed = client.get(f"/sweeps/{sweep_id}/trials").json()["items"]
    engine = create_engine_for(stack.database_url)
    with session_scope(engine, read_only=True) as session:
        trials = [
            get_trial(session, sweep_id=sweep_id, number=t.number)
            for t in list_trials(session, sweep_id=sweep_id).items
        ]
    assert [t.state.value for t in trials] == ["complete"] * 4
    for trial in trials:
        assert [s.step for s in trial.steps] == list(range(1, FAST_PROBE["steps"] + 1))
        assert trial.node and len(trial.node.split("/")) == 2  # "<ip>/<Ray node id>"
    assert len({t.node for t in trials}) == 2, [t.node for t in trials]  # both nodes ran trials
    assert {t["number"]: t["node"] for t in listed} == {t.number: t.node for t in trials}
    dashboard_log = stack.logs / "dashboard.log"
    _wait_http(f"{stack.dashboard}/api/studies", stack.processes["dashboard"], dashboard_log)
    studies = httpx.get(f"{stack.dashboard}/api/studies", timeout=30).json()["study_summaries"]
    study = {s["study_name"]: s for s in studies}[f"bai-sweep-{sweep_id}"]
    detail = httpx.get(f"{stack.dashboard}/api/studies/{study['study_id']}", timeout=60).json()
    assert len(detail["trials"]) == 4
    assert detail["objective_names"] == ["stability", "benchmark"]  # labelled objectives


def test_cancel_stops_a_sweep_on_the_cluster(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    engine = create_engine_for(stack.database_url)
    with httpx.Client(base_url=stack.api, timeout=30, headers=headers) as client:
        spec = stack.spec("compose-cancel", probe={"steps": 30})
        sweep_id = client.post("/sweeps", json=spec).json()["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with session_scope(engine, read_only=True) as session:
                running = list_trials(session, sweep_id=sweep_id, state="running").items
                steps = [
                    get_trial(session, sweep_id=sweep_id, number=t.number).steps for t in running
                ]
            if any(steps):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(stack.log("worker"))
        assert client.post(f"/sweeps/{sweep_id}/cancel").status_code in (200, 202)
        detail = stack.wait_status(client, sweep_id, {"cancelled", "succeeded", "failed"})
    assert detail["status"] == "cancelled"
    with session_scope(engine, read_only=True) as session:
        trials = list_trials(session, sweep_id=sweep_id).items
    assert trials and all(t.state.value in ("complete", "pruned") for t in trials)
    assert len(trials) < 4
