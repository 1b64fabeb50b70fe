"""The runner on a real 2-node Ray cluster and the real PostgreSQL: GPU packing, a DB outage.

The cluster (a head with one logical GPU, ``--num-gpus 1``, and a CPU node) is started by the
module and torn down after. Each sweep is queued on PostgreSQL and run by ``bai-sweep worker
--once`` joining the cluster by its GCS address (a process of its own: a test process that
ran a local Ray before cannot join a cluster afterwards), with Optuna's RDB storage and our
tables on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from storage import (
    SweepStatus,
    create_sweep,
    get_front,
    get_sweep,
    get_trial,
    init_database,
    list_trials,
    session_scope,
)
from sweeps.spec import SweepSpec
from tests.demo_specs import write_demo_spec
from tests.ray_cluster import NO_TOKEN_AUTH, LocalRayCluster
from tests.storage.conftest import fresh_postgres_database, postgres_server_url  # noqa: F401
from tests.sweeps.conftest import BAI_SWEEP

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: How long the database stays unreachable mid-sweep (the issue's bar).
OUTAGE_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    nodes = [{"num_cpus": 1, "num_gpus": 1}, {"num_cpus": 1}]
    with LocalRayCluster(tmp_path_factory.mktemp("ray-cluster"), nodes=nodes) as running:
        yield running


def _worker(cluster: LocalRayCluster, database_url: str, data_dir: Path) -> subprocess.Popen:
    """``bai-sweep worker --once`` on the cluster (its output in ``data_dir/worker.log``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **NO_TOKEN_AUTH,
        "BAI_SWEEP_DATABASE_URL": database_url,
        "BAI_SWEEP_RAY_ADDRESS": cluster.address,
        "BAI_SWEEP_DATA_DIR": str(data_dir),
        "BAI_SWEEP_HEARTBEAT_INTERVAL": "1",
    }
    env.pop("RAY_ADDRESS", None)
    log = (data_dir / "worker.log").open("w")
    process = subprocess.Popen(
        [BAI_SWEEP, "worker", "--once"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    return process


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:  # noqa: F811
    with fresh_postgres_database(postgres_server_url) as url:
        yield url


class CuttableProxy:
    """A TCP proxy to PostgreSQL that can be cut: open connections die, new ones are refused."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets |= {client, server}
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with self.lock:
                    self.sockets.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def sever(self) -> None:
        """Cut: kill every open connection and refuse new ones until :meth:`restore`."""
        self.cut.set()
        with self.lock:
            for sock in list(self.sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.closed = True
        self.sever()
        self.listener.close()


def _queue(url: str, spec: SweepSpec) -> tuple[str, str]:
    engine = init_database(url)
    with session_scope(engine) as session:
        sweep = create_sweep(
            session, name=spec.name, spec=spec.to_json_dict(), n_trials=spec.search.n_trials
        )
        return sweep.id, sweep.study_name


def _study(url: str, study_name: str) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=url)


def _steps_recorded(url: str, sweep_id: str) -> bool:
    return any(trial.steps for trial in _trials(url, sweep_id))


def _trials(url: str, sweep_id: str) -> list[Any]:
    with session_scope(init_database(url), read_only=True) as session:
        return [
            get_trial(session, sweep_id=sweep_id, number=t.number)
            for t in list_trials(session, sweep_id=sweep_id).items
        ]


def test_gpu_fractions_pack_two_trials_on_one_gpu(
    cluster: LocalRayCluster, demo_world: Any, postgres_url: str, tmp_path: Path
) -> None:
    spec = SweepSpec.from_file(
        write_demo_spec(
            demo_world,
            tmp_path / "gpu.yaml",
            name="test-gpu-packing",
            search={"n_trials": 2, "seed_points": "baselines"},
            resources={"cpus_per_trial": 0.5, "gpus_per_trial": 0.5, "max_concurrent_trials": 2},
        )
    )
    sweep_id, study_name = _queue(postgres_url, spec)
    worker = _worker(cluster, postgres_url, tmp_path / "data")
    assert worker.wait(600) == 0, (tmp_path / "data" / "worker.log").read_text()[-3000:]
    with session_scope(init_database(postgres_url), read_only=True) as session:
        assert get_sweep(session, sweep_id=sweep_id).status is SweepStatus.SUCCEEDED
    trials = _trials(postgres_url, sweep_id)
    # Only the head has a GPU: both half-GPU trials ran there, at the same time.
    assert len(trials) == 2 and len({t.node for t in trials}) == 1
    first, second = sorted(trials, key=lambda t: t.started_at)
    assert second.started_at < first.finished_at, "the two trials did not share the GPU"
    study = _study(postgres_url, study_name)
    assert [t.user_attrs["placement/gpu_ids"] for t in study.trials] == ["0", "0"]


def test_a_sweep_on_postgres_survives_a_60s_database_outage(
    cluster: LocalRayCluster, demo_world: Any, postgres_url: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    spec = SweepSpec.from_file(
        write_demo_spec(demo_world, tmp_path / "outage.yaml", name="test-outage")
    )
    upstream = make_url(postgres_url)
    proxy = CuttableProxy((upstream.host or "127.0.0.1", upstream.port or 5432))
    proxied = upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    sweep_id, study_name = _queue(postgres_url, spec)
    log = tmp_path / "data" / "worker.log"
    worker = _worker(cluster, proxied, tmp_path / "data")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _steps_recorded(postgres_url, sweep_id):
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert _steps_recorded(postgres_url, sweep_id), log.read_text()[-3000:]
        proxy.sever()  # mid-sweep: trials are running and streaming steps
        time.sleep(OUTAGE_S)
        proxy.restore()
        assert worker.wait(600) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        proxy.close()
    assert "database unavailable" in log.read_text()  # the outage really happened
    with session_scope(init_database(postgres_url), read_only=True) as session:
        assert get_sweep(session, sweep_id=sweep_id).status is SweepStatus.SUCCEEDED
        front = get_front(session, sweep_id=sweep_id)
    trials = _trials(postgres_url, sweep_id)
    assert [t.state.value for t in trials] == ["complete"] * 4
    for trial in trials:  # every step of every trial, the outage's included
        assert [s.step for s in trial.steps] == list(range(1, spec.probe.steps + 1))
        assert trial.node is not None
    assert front is not None and front.members and front.hypervolume > 0
    # Optuna's tell and our rows agree.
    study = _study(postgres_url, study_name)
    told = {t.number: t for t in study.trials}
    assert sorted(told) == [t.number for t in trials]
    for trial in trials:
        assert told[trial.number].state is TrialState.COMPLETE
        assert told[trial.number].values == [trial.objectives[n] for n in spec.objective_names]
