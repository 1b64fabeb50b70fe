"""The whole service for real: live API + ``bai-sweep worker`` subprocess + Ray + PPO + lm-eval.

One tiny sweep runs to completion and is shared by the REST, report (headless Chromium) and
dashboard tests; other tests cancel a running sweep and stop a worker mid-sweep (SIGTERM) so
that the next worker resumes it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.service.conftest import ModelRoot, free_port, live_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SWEEP_TIMEOUT = 600.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Service:
    """A live API, its settings, and the worker processes started against it."""

    client: httpx.Client
    settings: Settings
    env: dict[str, str]
    workers: list[subprocess.Popen]

    def start_worker(self) -> subprocess.Popen:
        """Start ``bai-sweep worker`` (``python -m service.cli worker``) on the same database."""
        log = open(self.settings.data_dir / f"worker-{len(self.workers)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def launch(self, spec: dict) -> str:
        response = self.client.post("/sweeps", json=spec)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def wait_for(
        self, sweep_id: str, condition: Callable[[dict], bool], what: str, timeout: float
    ) -> dict:
        """Poll ``GET /sweeps/{id}`` until ``condition(detail)``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            detail = self.client.get(f"/sweeps/{sweep_id}").json()
            if condition(detail):
                return detail
            if time.monotonic() > deadline:
                logs = "\n".join(
                    path.read_text()[-3000:] for path in self.settings.data_dir.glob("worker-*.log")
                )
                pytest.fail(f"sweep {sweep_id} never {what}: {detail}\n{logs}")
            time.sleep(0.5)


def _spec(model_root: ModelRoot, name: str, n_trials: int) -> dict:
    return model_root.spec(
        name=name,
        search={"n_trials": n_trials, "seed_points": "none", "seed": 0},
        resources={"cpus_per_trial": 1, "max_concurrent_trials": 1},
    )


@pytest.fixture(scope="module")
def service(service_settings: Callable[..., Settings], model_root: ModelRoot) -> Iterator[Service]:
    """A live API on loopback and one worker subprocess, on a fresh SQLite database."""
    settings = service_settings()
    env = {
        **os.environ,
        "BAI_SWEEP_DATA_DIR": str(settings.data_dir),
        "BAI_SWEEP_MODEL_ROOTS": str(model_root.root),
        "BAI_SWEEP_WORKER_POLL_INTERVAL": "0.2",
        "BAI_SWEEP_HEARTBEAT_INTERVAL": "0.5",
        "BAI_SWEEP_STALE_AFTER": "5",
    }
    env.pop("RAY_ADDRESS", None)
    with live_server(settings) as base, httpx.Client(base_url=base, timeout=60) as client:
        service = Service(client=client, settings=settings, env=env, workers=[])
        service.start_worker()
        try:
            yield service
        finally:
            for process in service.workers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in service.workers:
                try:
                    process.wait(120)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture(scope="module")
def finished_sweep(service: Service, model_root: ModelRoot) -> str:
    """A 3-trial sweep run to completion by the worker."""
    sweep_id = service.launch(_spec(model_root, "flow", 3))
    service.wait_for(
        sweep_id, lambda d: d["status"] not in ("queued", "running"), "finished", SWEEP_TIMEOUT
    )
    return sweep_id


def test_sweep_runs_to_completion(service: Service, finished_sweep: str) -> None:
    client = service.client
    detail = client.get(f"/sweeps/{finished_sweep}").json()
    trials = client.get(f"/sweeps/{finished_sweep}/trials").json()["items"]
    errors = [trial.get("error") for trial in trials]
    assert detail["status"] == "succeeded", (detail.get("error"), errors)
    assert detail["progress"]["total"] == 3
    assert detail["progress"]["finished"] == 3
    assert detail["progress"]["completed"] + detail["progress"]["failed"] == 3
    assert detail["progress"]["completed"] >= 1
    assert detail["running_trials"] == []
    assert detail["attempts"] == 1 and detail["finished_at"] is not None

    trials = client.get(f"/sweeps/{finished_sweep}/trials").json()
    assert trials["total"] == 3
    assert [t["number"] for t in trials["items"]] == [0, 1, 2]
    complete = [t for t in trials["items"] if t["state"] == "complete"]
    for trial in complete:
        assert set(trial["objectives"]) == {"stability", "benchmark"}
        assert abs(sum(trial["weights"]) - 1) < 1e-6 and 0 <= trial["alpha"] <= 1

    one = client.get(f"/sweeps/{finished_sweep}/trials/{complete[0]['number']}").json()
    assert one["params"] == {"weights": one["weights"], "alpha": one["alpha"]}
    assert [step["step"] for step in one["steps"]] == [1, 2]  # probe.steps = 2
    assert all(step["length_mean"] is not None for step in one["steps"])
    assert one["stability"] and one["benchmarks"]

    pareto = client.get(f"/sweeps/{finished_sweep}/pareto").json()
    assert pareto["members"], pareto
    assert detail["front"]["size"] == len(pareto["members"])
    numbers = {t["number"] for t in complete}
    assert {m["trial_number"] for m in pareto["members"]} <= numbers
    assert pareto["hypervolume"] is not None and pareto["hypervolume"] >= 0
    # The measurement's verdict on the front: its bootstrap interval, ties, the recommendation.
    interval = pareto["hypervolume_interval"]
    assert interval["mean"] == pytest.approx(pareto["hypervolume"])
    assert interval["low"] <= pareto["hypervolume"] <= interval["high"]
    assert set(pareto["tied"]) <= numbers - {m["trial_number"] for m in pareto["members"]}
    recommended = pareto["recommendation"]
    if recommended is not None:
        assert recommended["trial_number"] in numbers
        assert set(recommended["objectives"]) == {"stability", "benchmark"}
    listed = client.get("/sweeps", params={"status": "succeeded"}).json()
    assert finished_sweep in {item["id"] for item in listed["items"]}


def test_report_page(service: Service, finished_sweep: str) -> None:
    response = service.client.get(f"/sweeps/{finished_sweep}/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Pareto front" in page and "<table>" in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 3
    pareto = service.client.get(f"/sweeps/{finished_sweep}/pareto").json()
    table = page[page.index("<table>") : page.index("</table>")]
    assert table.count("<tr>") == len(pareto["members"]) + 1  # header + one row per member


@pytest.mark.browser
def test_report_renders_in_headless_chromium(
    service: Service, finished_sweep: str, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    url = f"{service.client.base_url}/sweeps/{finished_sweep}/report"
    # The page inlines its figures; a script run by the browser records whether each decoded.
    page = service.client.get(f"/sweeps/{finished_sweep}/report").text
    probe = (
        "<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
        "document.body.setAttribute('data-images',imgs.length);"
        "document.body.setAttribute('data-loaded',"
        "imgs.filter(i=>i.complete&&i.naturalWidth>0).length);});</script>"
    )
    local = tmp_path / "report.html"
    local.write_text(page.replace("</body>", probe + "</body>"))
    for target in (url, local.as_uri()):
        command = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000", "--dump-dom", target,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        dom = result.stdout
        assert "Sweep report" in dom and "<table>" in dom, dom[:500]
        if target == local.as_uri():
            images = int(re.search(r'data-images="(\d+)"', dom).group(1))
            loaded = int(re.search(r'data-loaded="(\d+)"', dom).group(1))
            assert images >= 3 and loaded == images, (images, loaded)


def test_dashboard_lists_the_study(service: Service, finished_sweep: str) -> None:
    port = free_port()
    env = {**service.env, "BAI_SWEEP_DASHBOARD_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "dashboard"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/studies", timeout=5)
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "optuna-dashboard did not start"
            time.sleep(0.3)
        names = {s["study_name"]: s for s in response.json()["study_summaries"]}
        assert f"bai-sweep-{finished_sweep}" in names, names
        study = names[f"bai-sweep-{finished_sweep}"]
        assert len(study["directions"]) == 2
        detail = httpx.get(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=30)
        assert detail.status_code == 200
        assert len(detail.json()["trials"]) == 3
    finally:
        process.terminate()
        process.wait(30)


def test_cancel_a_running_sweep(
    service: Service, model_root: ModelRoot, finished_sweep: str
) -> None:
    sweep_id = service.launch(_spec(model_root, "to-cancel", 40))
    detail = service.wait_for(
        sweep_id,
        lambda d: any(t["latest_step"] for t in d["running_trials"]),
        "showed the step metrics of a running trial",
        SWEEP_TIMEOUT,
    )
    running = detail["running_trials"][0]
    assert running["latest_step"]["step"] >= 1
    assert abs(sum(running["weights"]) - 1) < 1e-6
    response = service.client.post(f"/sweeps/{sweep_id}/cancel")
    assert response.status_code == 202
    final = service.wait_for(
        sweep_id, lambda d: d["status"] == "cancelled", "got cancelled", SWEEP_TIMEOUT
    )
    assert final["progress"]["finished"] < 40
    assert final["running_trials"] == []
    # Cancelling twice is a no-op; a finished sweep cannot be cancelled.
    assert service.client.post(f"/sweeps/{sweep_id}/cancel").status_code == 202
    conflict = service.client.post(f"/sweeps/{finished_sweep}/cancel")
    assert conflict.status_code == 409 and "already succeeded" in conflict.json()["detail"]
    assert service.workers[-1].poll() is None, "the worker survives a cancelled sweep"


def test_sigterm_hands_the_sweep_back_and_another_worker_resumes(
    service: Service, model_root: ModelRoot
) -> None:
    sweep_id = service.launch(_spec(model_root, "resume", 4))
    service.wait_for(
        sweep_id, lambda d: d["progress"]["completed"] >= 1, "completed a trial", SWEEP_TIMEOUT
    )
    first = service.workers[-1]
    first.send_signal(signal.SIGTERM)
    assert first.wait(180) == 0, "the worker exits cleanly on SIGTERM"
    released = service.client.get(f"/sweeps/{sweep_id}").json()
    if released["status"] == "queued":  # stopped mid-sweep: handed back with its trials kept
        assert released["progress"]["completed"] >= 1
        assert released["running_trials"] == []
    else:  # the last trial finished while the worker was stopping
        assert released["status"] == "succeeded", released
    service.start_worker()
    final = service.wait_for(
        sweep_id, lambda d: d["status"] == "succeeded", "succeeded", SWEEP_TIMEOUT
    )
    trials = service.client.get(f"/sweeps/{sweep_id}/trials").json()["items"]
    interrupted = [
        t for t in trials if t["state"] == "failed" and t["error"].startswith("interrupted")
    ]
    # Interrupted trials do not use up the budget: their ratios are run again on resume.
    assert len(trials) - len(interrupted) == 4
    for trial in interrupted:
        assert any(
            (t["weights"], t["alpha"]) == (trial["weights"], trial["alpha"])
            and t["number"] > trial["number"]
            for t in trials
        )
    if released["status"] == "queued":
        assert final["attempts"] == 2
