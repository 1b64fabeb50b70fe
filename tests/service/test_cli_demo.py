"""``bai-sweep demo build``: builds or reuses the demo world and prints its gates."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.cli.demo import _compare_bai_actor
from sweeps.demo import world as world_module
from tests.sweeps.test_demo_world import TINY

runner = CliRunner()


@pytest.mark.slow
def test_demo_build_reuses_the_cached_world_and_prints_its_gates(demo_world):
    result = runner.invoke(
        app, ["demo", "build", "--out", str(demo_world.root.parent), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert str(demo_world.root) in result.output.replace("\n", "")
    for check in demo_world.gates:
        assert check.name in result.output
    assert "NO" not in result.output  # only the documented, unenforced gates may fail
    for name in ("base", "sft_instruct", "sft_reasoning", "merge_w0.5_alpha0", "bai_world"):
        assert name in result.output


def test_a_failed_gate_is_a_one_line_error(tmp_path, monkeypatch):
    strict = dataclasses.replace(TINY, enforce_gates=True, min_domain_gain=1.01)
    monkeypatch.setattr(world_module, "WorldRecipe", lambda: strict)
    result = runner.invoke(app, ["demo", "build", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert "failed its quality gates" in result.output
    assert "instruct_beats_base_on_K" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_demo_compares_a_bai_actor_with_its_parents(demo_world, capsys):
    _compare_bai_actor(demo_world)
    output = capsys.readouterr().out
    assert "probe prompts" in output
    for name in ("base", "sft-instruct", "sft-reasoning", "BAI alpha=0.5"):
        assert name in output
    assert "Loading weights" not in output


def test_demo_runs_the_preflight_before_loading_a_model(demo_world, monkeypatch):
    from service.cli import _demo_sweep
    from service.cli import demo as demo_module

    monkeypatch.setattr(demo_module, "_build", lambda out, seed, progress: demo_world)
    probe = {**_demo_sweep.DEMO_SWEEP["probe"], "response_length": 100_000}
    monkeypatch.setitem(_demo_sweep.DEMO_SWEEP, "probe", probe)
    result = runner.invoke(app, ["demo", "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "probe.response_length" in lines[0], result.output
    assert "positions" in lines[0]
