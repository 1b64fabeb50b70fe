"""``bai-sweep probe``: the per-step table, the summary, the files it writes, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluators.probe import ProbeResult
from service.cli import app
from tests.tiny_models import make_probe_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    prompts = [{"prompt": f"what is {n} plus 2 ?", "answer": n + 2} for n in range(6)]
    root = tmp_path_factory.mktemp("probe-cli")
    return make_probe_inputs(root, prompts, actor_seed=5, reward_seed=6)


def _arguments(checkpoints: dict[str, Path], *extra: str) -> list[str]:
    return [
        "probe",
        "--actor",
        str(checkpoints["actor"]),
        "--reward",
        str(checkpoints["reward"]),
        "--prompts",
        str(checkpoints["prompts"]),
        *extra,
    ]


@pytest.mark.slow
def test_probe_prints_steps_and_summary_and_writes_the_figure(checkpoints, tmp_path) -> None:
    out = tmp_path / "out"
    extra = ["--steps", "2", "--batch-size", "4", "--response-length", "6", "--out", str(out)]
    result = runner.invoke(app, _arguments(checkpoints, *extra))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # (stderr progress bars may share the header's line in the captured output)
    header = next(index for index, line in enumerate(lines) if re.search(r"step +len +p10", line))
    rows = [line.split() for line in lines[header + 1 :] if re.match(r" +\d+ +\d", line)]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(len(row) == 13 for row in rows)
    assert "stop: completed" in result.output
    assert "length_retention" in result.output and "stability" in result.output
    assert (out / "probe_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = ProbeResult.model_validate_json((out / "probe.json").read_text())
    assert [step.step for step in saved.steps] == [1, 2]
    assert saved.stability is not None


def test_probe_errors_are_one_line(checkpoints, tmp_path) -> None:
    missing = runner.invoke(
        app,
        ["probe", "--actor", str(tmp_path), "--reward", "r", "--prompts", "p"],
    )
    assert missing.exit_code == 2
    assert "is not a checkpoint directory" in missing.output
    assert "Traceback" not in missing.output

    bad_prompts = tmp_path / "prompts.jsonl"
    bad_prompts.write_text("not json\n")
    arguments = _arguments(checkpoints, "--batch-size", "4", "--response-length", "4")
    arguments[arguments.index("--prompts") + 1] = str(bad_prompts)
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    assert "prompts.jsonl:1" in result.output

    invalid = runner.invoke(app, _arguments(checkpoints, "--batch-size", "5", "--steps", "0"))
    assert invalid.exit_code == 2
