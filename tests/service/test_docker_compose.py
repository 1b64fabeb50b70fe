"""Static checks of docker-compose.yml and the Dockerfile (no Docker engine runs here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from service.cli import app

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OUR_IMAGE_SERVICES = [name for name, service in SERVICES.items() if "build" in service]


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _steps(service: dict[str, Any]) -> list[list[str]]:
    """The commands a service runs: ``sh -c "A && exec B"`` is ``[A, B]``."""
    command = _command(service)
    if command[:2] != ["sh", "-c"]:
        return [command]
    steps = [shlex.split(step) for step in command[2].split(" && ")]
    return [step[1:] if step[0] == "exec" else step for step in steps]


def _parse(group: Any, args: list[str]) -> Any:
    """Resolve ``args`` through a click group's subcommands and parse the options.

    Typer vendors its own copy of click, so groups are recognised by their ``commands``.
    """
    command = group
    while hasattr(command, "commands"):
        assert args, f"{group.name}: missing subcommand"
        name, args = args[0], args[1:]
        assert name in command.commands, f"{name!r} is not a command of {command.name}"
        command = command.commands[name]
    command.make_context(command.name, list(args))  # raises on unknown options
    return command


def test_expected_services() -> None:
    expected = {"postgres", "ray-head", "ray-node", "api", "worker", "dashboard", "migrate"}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize("name", OUR_IMAGE_SERVICES)
def test_commands_are_real_cli_commands(name: str) -> None:
    for command in _steps(SERVICES[name]):
        if command[0] == "bai-sweep":
            _parse(typer.main.get_command(app), command[1:])
        else:
            from ray.scripts.scripts import cli as ray_cli

            assert command[0] == "ray", f"{name} runs {command[0]!r}, not bai-sweep or ray"
            _parse(ray_cli, command[1:])


def test_service_commands() -> None:
    assert _command(SERVICES["migrate"])[:3] == ["bai-sweep", "db", "upgrade"]
    # A Ray driver attaches to a raylet on its own host: the worker joins as a node, no CPUs.
    join, worker = _steps(SERVICES["worker"])
    assert join[:3] == ["ray", "start", "--address=ray-head:6379"] and "--num-cpus=0" in join
    assert worker[:2] == ["bai-sweep", "worker"]
    assert _command(SERVICES["dashboard"])[:2] == ["bai-sweep", "dashboard"]
    api = _command(SERVICES["api"])
    assert api[:2] == ["bai-sweep", "serve"] and "--no-worker" in api
    assert _command(SERVICES["ray-head"])[:3] == ["ray", "start", "--head"]
    assert _command(SERVICES["ray-node"])[:3] == ["ray", "start", "--address=ray-head:6379"]


@pytest.mark.parametrize("name", OUR_IMAGE_SERVICES)
def test_build_context_and_dockerfile_exist(name: str) -> None:
    build = SERVICES[name]["build"]
    context = REPO / build["context"]
    assert context.is_dir()
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_dockerfile_copies_existing_files() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    sources = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            sources += [part for part in line.split()[1:-1] if not part.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not set(sources) & set(ignored)
    packages = {"service", "sweeps", "storage", "evaluators"}
    assert packages <= set(sources), "every package must be in the image"


def test_depends_on_waits_for_healthy_services() -> None:
    for name, service in SERVICES.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must state conditions"
        for dependency, spec in depends_on.items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if dependency == "migrate":
                assert condition == "service_completed_successfully"
            else:
                assert condition == "service_healthy", f"{name} -> {dependency}"
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
    for name in ("api", "worker", "dashboard", "migrate"):
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "dashboard"):
        assert "migrate" in SERVICES[name]["depends_on"]
    assert SERVICES["worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "ray-head" not in SERVICES["api"].get("depends_on", {}), "the API never uses Ray"


def _env(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in SERVICES[name].get("environment", {}).items()}


def test_environment_is_consistent() -> None:
    postgres = _env("postgres")
    for name in OUR_IMAGE_SERVICES:
        url = _env(name)["BAI_SWEEP_DATABASE_URL"]
        match = re.fullmatch(r"postgresql://(\w+):(.+)@postgres:5432/(\w+)", url)
        assert match, url
        assert match.group(1) == postgres["POSTGRES_USER"]
        assert match.group(2) == postgres["POSTGRES_PASSWORD"]
        assert match.group(3) == postgres["POSTGRES_DB"]
    # The worker joins by GCS address: Ray Client (ray://) is refused by the runner.
    ray_head = _command(SERVICES["ray-head"])
    assert _env("worker")["RAY_ADDRESS"] == f"ray-head:{_option(ray_head, '--port', '=')}"
    assert not any("client" in part for part in ray_head)
    assert "RAY_ADDRESS" not in _env("api"), "the API never starts or joins Ray"
    assert "BAI_SWEEP_API_TOKEN" in _env("api")
    assert _env("api")["BAI_SWEEP_API_TOKEN"].startswith("${BAI_SWEEP_API_TOKEN:?")


def _published(name: str) -> list[tuple[str | None, int, int]]:
    ports = []
    for entry in SERVICES[name].get("ports", []):
        parts = str(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else None
        ports.append((host_ip, int(parts[-2]), int(parts[-1])))
    return ports


def _option(command: list[str], option: str, sep: str = " ") -> str:
    if sep == "=":
        return next(part.split("=", 1)[1] for part in command if part.startswith(option + "="))
    return command[command.index(option) + 1]


def test_ports_match_the_commands() -> None:
    api = _command(SERVICES["api"])
    assert _published("api") == [(None, int(_option(api, "--port")), int(_option(api, "--port")))]
    assert _option(api, "--host") == "0.0.0.0"
    dashboard = _command(SERVICES["dashboard"])
    port = int(_option(dashboard, "--port"))
    # optuna-dashboard has no authentication: only the host's loopback may reach it.
    assert _published("dashboard") == [("127.0.0.1", port, port)]
    healthcheck = " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert f":{_option(api, '--port')}/healthz" in healthcheck


def test_volumes_are_declared_and_shared() -> None:
    declared = set(COMPOSE["volumes"])
    mounts: dict[str, set[str]] = {}
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
            mounts.setdefault(name, set()).add(f"{source}:{target}")
    data_dir = _env("worker")["BAI_SWEEP_DATA_DIR"]
    roots = _env("worker")["BAI_SWEEP_MODEL_ROOTS"]
    # The API validates model paths, the worker and the Ray nodes read them, the dashboard
    # reads the artifacts: all see the same data volume and model roots.
    for name in ("api", "worker", "ray-head", "ray-node", "dashboard"):
        targets = {mount.split(":")[1] for mount in mounts[name]}
        assert {data_dir, roots} <= targets, name
        assert _env(name)["BAI_SWEEP_MODEL_ROOTS"] == roots
    assert any(mount.endswith(":/var/lib/postgresql/data") for mount in mounts["postgres"])
