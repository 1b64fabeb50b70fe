"""Helpers shared by the benchmark tests: a network guard and task-YAML writers."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like never leave the machine
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Refuse (and record) every connection attempt to a non-loopback address."""
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def connect(self: socket.socket, address: object) -> None:
        if not _is_local(address):
            attempts.append(address)
            raise OSError(f"network access attempted in a test: {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _is_local(address):
            attempts.append(address)
            raise OSError(f"network access attempted in a test: {address!r}")
        return real_connect_ex(self, address)

    def create_connection(address: tuple[str, int], *args: object, **kwargs: object):
        if not _is_local(address):
            attempts.append(address)
            raise OSError(f"network access attempted in a test: {address!r}")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield attempts


def write_task_yaml(directory: Path, name: str, body: str) -> Path:
    """Write ``<directory>/<name>.yaml`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def user_task_body(task: str, data_file: Path) -> str:
    """A valid generate_until task over ``data_file`` (JSONL with question/answer)."""
    return f"""task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["what is"]
  do_sample: false
  max_gen_toks: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
