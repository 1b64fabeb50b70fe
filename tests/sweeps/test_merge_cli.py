"""``bai-sweep merge`` (and the temporary ``bai-sweep demo``): exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from service.cli import app
from tests.tiny_models import make_family

runner = CliRunner()


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return make_family(tmp_path_factory.mktemp("cli"), arch="qwen2", tie_word_embeddings=True)


def _arguments(family: tuple[Path, list[Path]], *extra: str) -> list[str]:
    base, sfts = family
    arguments = ["merge", "--base", str(base)]
    for sft in sfts:
        arguments += ["--sft", str(sft)]
    return [*arguments, *extra]


def test_merge_writes_the_checkpoint(family, tmp_path):
    out = tmp_path / "bai"
    mergekit = tmp_path / "bai.yaml"
    arguments = ["--weights", "0.25,0.75", "--alpha", "0.5", "--out", str(out)]
    arguments += ["--dtype", "float32", "--max-shard-size", "10KB"]
    result = runner.invoke(app, _arguments(family, *arguments, "--export-mergekit", str(mergekit)))
    assert result.exit_code == 0, result.output
    assert f"into {out}" in result.output
    recipe = json.loads((out / "bai_recipe.json").read_text())
    assert recipe["weights"] == [0.25, 0.75] and recipe["alpha"] == 0.5
    assert recipe["dtype"] == "float32"
    assert (out / "model.safetensors.index.json").is_file() and mergekit.is_file()


def test_default_weights_are_equal_and_normalize_rescales(family, tmp_path):
    equal = runner.invoke(app, _arguments(family, "--alpha", "0.2", "--out", str(tmp_path / "a")))
    rescaled = runner.invoke(
        app,
        _arguments(
            family,
            "--weights",
            "2,2",
            "--normalize",
            "--alpha",
            "0.2",
            "--out",
            str(tmp_path / "b"),
        ),
    )
    assert equal.exit_code == 0 and rescaled.exit_code == 0, equal.output + rescaled.output
    first, second = (
        load_file(tmp_path / "a/model.safetensors"),
        load_file(tmp_path / "b/model.safetensors"),
    )
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert json.loads((tmp_path / "a/bai_recipe.json").read_text())["weights"] == [0.5, 0.5]


def test_dry_run_prints_the_plan_and_writes_nothing(family, tmp_path):
    out = tmp_path / "bai"
    result = runner.invoke(
        app,
        _arguments(
            family, "--weights", "0.5,0.5", "--alpha", "0.3", "--out", str(out), "--dry-run"
        ),
    )
    assert result.exit_code == 0, result.output
    assert "Qwen2ForCausalLM" in result.output
    assert "coefficients  0.3, 0.35, 0.35" in result.output
    assert "pre-flight    OK" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "0.5,0.6", "--alpha", "0.3"], "weights sum to 1.1, not 1"),
        (["--weights", "0.5,x", "--alpha", "0.3"], "--weights must be comma-separated numbers"),
        (["--alpha", "2"], "alpha is 2.0: it must lie in [0, 1]"),
        (["--alpha", "0.3", "--dtype", "int4"], "unsupported output dtype 'int4'"),
        (["--alpha", "0.3", "--device", "cuda"], "CUDA is not available"),
        (["--alpha", "0.3", "--max-shard-size", "big"], "invalid shard size 'big'"),
        (["--alpha", "0.3", "--sft", "/nonexistent/sft"], "sft[2] checkpoint /nonexistent/sft"),
    ],
)
def test_user_errors_exit_2_with_one_line(family, tmp_path, extra, message):
    out = tmp_path / "bai"
    result = runner.invoke(app, _arguments(family, "--out", str(out), *extra))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in " ".join(result.output.split())
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_out_is_required_without_dry_run(family):
    result = runner.invoke(app, _arguments(family, "--alpha", "0.3"))
    assert result.exit_code == 2
    assert "--out is required" in result.output


def test_console_script_reports_incompatible_checkpoints_without_traceback(family, tmp_path):
    base, sfts = family
    other = make_family(tmp_path / "llama", n_sft=1, arch="llama")[0]
    command = [sys.executable, "-m", "service.cli", *_arguments((base, [sfts[0], other]))]
    command += ["--alpha", "0.3", "--out", str(tmp_path / "bai")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "architecture mismatch" in completed.stderr
    assert not (tmp_path / "bai").exists()
