"""The memory plan: arithmetic, GPU fit decisions (any GPU size, none needed), and the plan of a
real CPU probe against its measured peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from evaluators.placement import plan_placement
from evaluators.reward_rules import REWARD_RULES
from sweeps.exceptions import InvalidSpecError
from sweeps.memory_plan import (
    CUDA_CONTEXT_BYTES,
    GIB,
    ModelShape,
    check_gpu_fit,
    check_trial_memory,
    estimate,
    plan_trial_memory,
)
from sweeps.spec import SweepSpec
from tests.tiny_models import make_checkpoint

# A 7B-class decoder (Qwen2.5-7B's shape).
SEVEN_B = ModelShape(
    parameters=7_615_616_512,
    vocab_size=152_064,
    hidden_size=3584,
    num_layers=28,
    intermediate_size=18_944,
    kv_width=4 * 128,
    tied=False,
)
PROBE = {"batch_size": 8, "mini_batches": 1, "context_length": 128, "response_length": 128}


def _plan(device: str, reward: ModelShape | None = SEVEN_B, **overrides):
    placement = plan_placement(device, "auto", bf16_supported=True)
    settings = {**PROBE, "gradient_checkpointing": False} | overrides
    return estimate(
        actor=SEVEN_B,
        value=SEVEN_B,
        reward=reward,
        merge_input_bytes=3 * SEVEN_B.parameters * 2,
        placement=placement,
        **settings,
    )


def test_gpu_plan_of_a_7b_trial() -> None:
    plan = _plan("cuda")
    parts = {c.name: c.nbytes for c in plan.components}
    params = SEVEN_B.parameters
    assert parts["actor"] == parts["value model"] == 4 * params
    assert parts["reference"] == parts["reward model"] == 2 * params
    assert parts["gradients"] == 8 * params and parts["optimizer"] == 16 * params
    assert parts["merge inputs"] == 6 * params
    # The merge inputs stay in host memory.
    assert plan.host_bytes == parts["merge inputs"]
    assert plan.device_bytes == sum(parts.values()) - parts["merge inputs"] + CUDA_CONTEXT_BYTES
    assert plan.precision == "bf16-autocast"
    assert 240 * GIB < plan.device_bytes < 300 * GIB
    assert plan.trials_per_gpu(80 * GIB) == 0
    assert any("device total" in line for line in plan.lines())


def test_gradient_checkpointing_shrinks_the_update_activations() -> None:
    def activations(plan):
        return next(c.nbytes for c in plan.components if c.name == "activations")

    full = _plan("cuda", batch_size=64, response_length=1024)
    checkpointed = _plan("cuda", batch_size=64, response_length=1024, gradient_checkpointing=True)
    assert activations(checkpointed) < activations(full)


def test_gpu_fit_refuses_warns_or_passes() -> None:
    plan = _plan("cuda", reward=None)
    need = plan.device_bytes
    with pytest.raises(InvalidSpecError, match="one GPU has"):
        check_gpu_fit(plan, 1.0, need - 1)
    assert check_gpu_fit(plan, 1.0, need) is None
    assert check_gpu_fit(plan, 2.0, need) is None
    warning = check_gpu_fit(plan, 0.5, int(need * 1.5))
    assert warning is not None and "at most 1 fit" in warning
    assert check_gpu_fit(plan, 0.5, 2 * need) is None
    assert plan.trials_per_gpu(2 * need) == 2


def _spec(root: Path, *, prompts: int, resources: dict | None = None, **probe) -> SweepSpec:
    common = {"dtype": torch.bfloat16, "vocab_size": 8192, "hidden_size": 512, "num_layers": 8}
    base = make_checkpoint(root / "base", seed=0, **common)
    sfts = [make_checkpoint(root / f"sft{i}", seed=i + 1, **common) for i in range(2)]
    prompt_file = root / "prompts.jsonl"
    lines = [json.dumps({"prompt": f"what is {n} plus {n + 3} ?"}) + "\n" for n in range(prompts)]
    prompt_file.write_text("".join(lines))
    data = {
        "name": "memory",
        "models": {
            "base": str(base),
            "sft": [str(p) for p in sfts],
            "reward_rule": sorted(REWARD_RULES)[0],
            "prompts": str(prompt_file),
        },
        "search": {"n_trials": 1, "seed_points": "none"},
        "probe": {"device": "cpu", "early_stop": False, **probe},
        "resources": resources or {},
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(data))
    return SweepSpec.from_file(root / "spec.yaml")


def test_runner_check_plans_for_the_gpu_it_is_given(tmp_path) -> None:
    spec = _spec(tmp_path, prompts=8, resources={"gpus_per_trial": 0.25}, batch_size=8)
    plan = plan_trial_memory(spec, device="cuda")
    need = plan.device_bytes
    assert plan.host_bytes == next(c.nbytes for c in plan.components if c.name == "merge inputs")
    with pytest.raises(InvalidSpecError, match="one GPU has"):
        check_trial_memory(spec, gpu_bytes=need - 1, bf16_supported=True)
    warning = check_trial_memory(spec, gpu_bytes=2 * need, bf16_supported=True)
    assert warning is not None and "packs 4 trials per GPU" in warning
    assert check_trial_memory(spec, gpu_bytes=4 * need, bf16_supported=True) is None
    cpu_only = spec.model_copy(
        update={"resources": spec.resources.model_copy(update={"gpus_per_trial": 0})}
    )
    assert check_trial_memory(cpu_only, gpu_bytes=1, bf16_supported=True) is None


# Runs in a fresh process: the peak of its own address space (VmHWM) is the probe's, while
# ru_maxrss would carry the pytest parent's peak across the exec.
PROBE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from transformers import AutoTokenizer
    from evaluators.backends import _trl_ppo  # every heavy import before the baseline
    from evaluators.probe import run_probe
    from evaluators.reward_rules import REWARD_RULES
    from sweeps.merge import load_merge_inputs
    from sweeps.spec import SweepSpec

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    spec = SweepSpec.from_file(sys.argv[1])
    tokenizer = AutoTokenizer.from_pretrained(spec.models.base)
    baseline = status("VmRSS")
    inputs = load_merge_inputs(spec.models.base, spec.models.sft)
    actor = inputs.build_actor([0.5, 0.5], 0.5)
    reward = REWARD_RULES[spec.models.reward_rule]
    run_probe(actor, tokenizer, reward, spec.models.prompts, spec.probe, prompt=spec.prompt)
    print(json.dumps({"baseline": baseline, "peak": status("VmHWM")}))
    """
)


@pytest.mark.slow
def test_plan_matches_the_measured_peak_of_a_cpu_probe_within_20_percent(tmp_path) -> None:
    spec = _spec(tmp_path, prompts=8, steps=2, batch_size=8, response_length=16)
    plan = plan_trial_memory(spec, device="cpu")
    assert plan.precision == "fp32"
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT, str(tmp_path / "spec.yaml")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    used = measured["peak"] - measured["baseline"]
    ratio = plan.device_bytes / used
    print(f"plan {plan.device_bytes / 2**20:.0f} MiB, measured {used / 2**20:.0f} MiB")
    assert 0.8 <= ratio <= 1.2, f"plan / measured = {ratio:.3f}\n" + "\n".join(plan.lines())


def test_plan_command_prints_the_plan_and_the_fit_per_gpu(tmp_path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    _spec(tmp_path, prompts=8, resources={"gpus_per_trial": 1}, batch_size=8)
    spec_file = str(tmp_path / "spec.yaml")
    runner = CliRunner()
    result = runner.invoke(app, ["plan", spec_file, "--gpu-memory", "1GiB", "--gpu-memory", "8GiB"])
    assert result.exit_code == 0, result.output
    for name in ("actor", "reference", "value model", "optimizer", "activations", "merge inputs"):
        assert name in result.output
    assert "GPU 1GiB (1 GiB): 0 trial(s) fit" in result.output
    assert "one GPU has 1.0 GiB" in result.output
    assert "GPU 8GiB (8 GiB): 4 trial(s) fit; gpus_per_trial=1: ok" in result.output
    bad = runner.invoke(app, ["plan", spec_file, "--gpu-memory", "lots"])
    assert bad.exit_code == 2 and "--gpu-memory 'lots' is not a size" in bad.output
    missing = runner.invoke(app, ["plan", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and "cannot read sweep spec" in missing.output
