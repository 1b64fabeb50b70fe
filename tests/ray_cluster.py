"""A real multi-node Ray cluster on this machine, started and stopped by a test or benchmark.

Each node is ``ray start --block`` in its own session with its own ports (picked free), all
under one private ``--temp-dir``; stopping kills exactly those sessions (never ``ray stop``,
which would end every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

RAY = str(Path(sys.executable).with_name("ray"))
#: Ray >= 2.5x turns token authentication on as soon as ``~/.ray/auth_token`` exists (another
#: Ray on this machine may have created it); a test cluster and its drivers run without it.
NO_TOKEN_AUTH = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalRayCluster:
    """A head and further nodes (``nodes[i]`` = ``{"num_cpus": 1, "num_gpus": 0}``)."""

    root: Path
    nodes: list[dict[str, float]] = field(default_factory=lambda: [{"num_cpus": 1}] * 2)
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, **NO_TOKEN_AUTH})
    processes: list[subprocess.Popen] = field(default_factory=list)
    temp_dir: Path | None = None

    @property
    def address(self) -> str:
        """The GCS address (``RAY_ADDRESS``) of the head."""
        return f"127.0.0.1:{self.port}"

    def isolation_flags(self, resources: dict[str, float], *, head: bool) -> list[str]:
        """Flags that keep a node apart from any other Ray on this machine (own ports)."""
        worker_base = random.randrange(20_000, 29_000, 100)
        flags = [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={resources.get('num_cpus', 1):g}",
            f"--num-gpus={resources.get('num_gpus', 0):g}",
            "--object-store-memory=100000000",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--min-worker-port={worker_base}",
            f"--max-worker-port={worker_base + 99}",
        ]
        if head:
            # Short: Ray's unix socket paths under it must stay below 108 bytes.
            self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
            flags += ["--include-dashboard=false", f"--temp-dir={self.temp_dir}"]
        return flags

    def default_commands(self) -> list[list[str]]:
        """``ray start`` of the head and of each further node."""
        head = ["ray", "start", "--head", "--block", f"--port={self.port}"]
        node = ["ray", "start", f"--address={self.address}", "--block"]
        return [head] + [node] * (len(self.nodes) - 1)

    def start(
        self, commands: list[list[str]] | None = None, *, timeout: float = 180.0
    ) -> LocalRayCluster:
        """Run each node's ``ray start`` command (plus isolation flags); wait for all nodes.

        Args:
            commands: One ``ray start ...`` argv per node, the head's first (default
                :meth:`default_commands`); ``ray`` is this environment's.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            # One node at a time: joining nodes started together on a loaded machine time out
            # waiting for the GCS ("The current node timed out during startup").
            for index, command in enumerate(commands or self.default_commands()):
                self._start_node(index, command)
                self._wait_for(index + 1, timeout)
        except BaseException:
            self.stop()  # never leave a half-started cluster behind
            raise
        return self

    def _start_node(self, index: int, command: list[str]) -> None:
        flags = self.isolation_flags(self.nodes[index], head=index == 0)
        argv = [RAY if command[0] == "ray" else command[0], *command[1:], *flags]
        if "--disable-usage-stats" not in argv:
            argv.append("--disable-usage-stats")
        log = (self.root / f"node-{index}.log").open("w")
        self.processes.append(
            subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        log.close()

    def alive_nodes(self) -> int:
        """How many nodes the head counts as alive (from ``ray status``)."""
        out = subprocess.run(
            [RAY, "status", f"--address={self.address}"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            return 0
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def _wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p.args for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a Ray node exited early: {dead}\n{self.logs()}")
            if self.alive_nodes() >= count:
                return
            time.sleep(1.0)
        raise RuntimeError(f"{count} Ray nodes did not come up in {timeout:g} s\n{self.logs()}")

    def logs(self) -> str:
        """The tail of every node's ``ray start`` output."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-2000:]}"
            for path in sorted(self.root.glob("node-*.log"))
        )

    def stop(self) -> None:
        """Kill the nodes' sessions (worker nodes first), SIGTERM then SIGKILL."""
        for process in reversed(self.processes):
            _kill_session(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            _kill_session(process, signal.SIGKILL)
            process.wait()
        self.processes.clear()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _kill_session(process: subprocess.Popen, sig: int) -> None:
    # The session holds the node's raylet, GCS and the Ray workers it started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
