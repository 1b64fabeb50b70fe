"""The Tune room's checks that need no Ray: connection modes and paths on a node."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps._ray_mode import check_ray_address
from sweeps._tune_driver import missing_paths
from sweeps.exceptions import SweepRunError
from sweeps.spec import SweepSpec


@pytest.mark.parametrize("address", [None, "", "head:6379", "127.0.0.1:6379", "auto"])
def test_gcs_addresses_and_local_ray_are_accepted(
    address: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    check_ray_address(address)


@pytest.mark.parametrize("address", ["ray://head:10001", " RAY://head:10001"])
def test_ray_client_is_refused_from_the_argument_or_the_environment(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SweepRunError, match="GCS address"):
        check_ray_address(address)
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(SweepRunError, match="not supported"):
        check_ray_address(None)


def test_a_node_missing_the_models_names_them(tmp_path: Path) -> None:
    present = tmp_path / "base"
    present.mkdir()
    spec = SweepSpec.parse(
        {
            "name": "paths",
            "models": {
                "base": str(present),
                "sft": [str(tmp_path / "gone"), "org/hub-model"],
                "reward": str(tmp_path / "reward"),
                "prompts": str(tmp_path / "prompts.jsonl"),
            },
        }
    )
    # Hub ids are not paths; absolute paths must exist on the node running the trial.
    assert missing_paths(spec) == [
        str(tmp_path / "gone"),
        str(tmp_path / "prompts.jsonl"),
        str(tmp_path / "reward"),
    ]
