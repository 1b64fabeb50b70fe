"""``bai-sweep bench``: a table of metrics, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from service.cli import app
from tests.tiny_models import make_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("bench-cli") / "m", dtype=torch.float32)


def test_bench_prints_a_table_of_metrics(checkpoint: Path) -> None:
    args = ["bench", "--model", str(checkpoint), "--tasks", "bai_facts_mc", "--limit", "2"]
    # The shipped R tasks let a model reason for 192-256 tokens; this model has 128 positions.
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--max-gen-toks", "32"])
    assert result.exit_code == 0, result.output
    assert "bai_facts_mc" in result.output
    assert "bai_arith_long_gen" in result.output  # the shipped report task is kept
    assert "benchmark (weighted mean of selection tasks)" in result.output


def test_bench_json_output(checkpoint: Path) -> None:
    args = ["bench", "--model", str(checkpoint), "--tasks", "bai_facts_mc", "--report", ""]
    result = CliRunner().invoke(app, [*args, "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload["per_task"]) == ["bai_facts_mc"]
    assert payload["benchmark"] == payload["per_task"]["bai_facts_mc"]["score"]


def test_bench_user_errors_are_one_line(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("task: [unclosed\n")
    args = ["bench", "--model", str(checkpoint), "--include-path", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "error:" in result.output and "bad.yaml is malformed" in result.output
    assert "Traceback" not in result.output

    overlap = ["bench", "--model", str(checkpoint), "--tasks", "a", "--report", "a"]
    result = CliRunner().invoke(app, overlap)
    assert result.exit_code == 2
    assert "both selection and report" in result.output

    missing = CliRunner().invoke(app, ["bench", "--model", str(tmp_path / "none")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
