"""``bai-sweep probe`` and ``bench``: ``--prompt-format`` and ``--precision`` as the spec has
them, and the generation budget refused before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from evaluators.probe import ProbeResult
from service.cli import app
from tests.tiny_models import make_probe_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    prompts = [{"prompt": f"what is {n} plus 2 ?"} for n in range(6)]
    root = tmp_path_factory.mktemp("cli-flags")
    return make_probe_inputs(root, prompts, actor_seed=5, reward_seed=6)


def _probe(checkpoints: dict[str, Path], *extra: str) -> list[str]:
    paths = ["--actor", str(checkpoints["actor"]), "--reward", str(checkpoints["reward"])]
    return ["probe", *paths, "--prompts", str(checkpoints["prompts"]), *extra]


def _one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_probe_runs_with_the_prompt_format_and_precision_given(checkpoints, tmp_path) -> None:
    out = tmp_path / "out"
    extra = ["--steps", "1", "--batch-size", "2", "--response-length", "4", "--out", str(out)]
    flags = ["--prompt-format", "raw", "--precision", "bf16"]
    result = runner.invoke(app, _probe(checkpoints, *extra, *flags))
    assert result.exit_code == 0, result.output
    saved = ProbeResult.model_validate_json((out / "probe.json").read_text())
    assert saved.prompt_format == "raw" and saved.config.precision == "bf16"


def test_probe_refuses_bad_flags_before_loading(checkpoints) -> None:
    _one_line_error(runner.invoke(app, _probe(checkpoints, "--precision", "fp16")), "--precision")
    bogus = runner.invoke(app, _probe(checkpoints, "--prompt-format", "html"))
    _one_line_error(bogus, "--prompt-format")
    # The tiny tokenizer has no chat template.
    chat = runner.invoke(app, _probe(checkpoints, "--prompt-format", "chat"))
    _one_line_error(chat, "--prompt-format", "chat template", "auto or raw")


def test_bench_prompt_format_and_generation_budget(checkpoints) -> None:
    bench = ["bench", "--model", str(checkpoints["actor"]), "--limit", "2", "--json"]
    result = runner.invoke(app, [*bench, "--tasks", "bai_facts_mc", "--report", ""])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prompt_format"] == "raw"
    chat = runner.invoke(app, [*bench, "--prompt-format", "chat"])
    _one_line_error(chat, "--prompt-format", "chat template")
    _one_line_error(runner.invoke(app, [*bench, "--prompt-format", "x"]), "--prompt-format")
    # bai_arith_gen lets a model write 192 tokens; this one has 128 positions.
    budget = runner.invoke(app, [*bench, "--tasks", "bai_arith_gen", "--report", ""])
    _one_line_error(budget, "--max-gen-toks", "bai_arith_gen", "192 tokens", "128 positions")
    tight = [*bench, "--tasks", "bai_arith_gen", "--report", "", "--max-gen-toks", "120"]
    _one_line_error(runner.invoke(app, tight), "--max-gen-toks", "120 tokens", "<=")
