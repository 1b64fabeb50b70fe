"""``bai-sweep plan``: a trial's memory from the configs alone, and how many trials fit a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cli._app import app, console, fail, user_errors

_DEFAULT_GPUS = ["24GiB", "40GiB", "80GiB"]


@app.command()
def plan(
    spec_file: Annotated[Path, typer.Argument(help="Sweep spec (YAML or JSON).")],
    device: Annotated[str, typer.Option(help="Plan for this device: cuda or cpu.")] = "cuda",
    gpu_memory: Annotated[
        list[str] | None,
        typer.Option(help="GPU size to fit trials on, e.g. 80GiB (repeat). Default 24/40/80GiB."),
    ] = None,
    bf16: Annotated[
        bool, typer.Option("--bf16/--no-bf16", help="Whether the GPU computes in bf16 (Ampere+).")
    ] = True,
) -> None:
    """Print each trial's memory (actor, reference, value, reward, optimizer, activations, merge
    inputs) from the checkpoints' configs and headers, without loading weights."""
    from sweeps.exceptions import InvalidSpecError, MergeOptionError
    from sweeps.memory_plan import GIB, check_gpu_fit, plan_trial_memory
    from sweeps.merge import parse_size
    from sweeps.spec import SweepSpec

    if device not in ("cuda", "cpu"):
        raise fail(f"--device must be cuda or cpu, got {device!r}")
    sizes = []
    for text in gpu_memory or _DEFAULT_GPUS:
        try:
            sizes.append((text, parse_size(text)))
        except MergeOptionError:
            raise fail(f"--gpu-memory {text!r} is not a size such as 80GiB") from None
    with user_errors():
        spec = SweepSpec.from_file(spec_file)
        memory = plan_trial_memory(
            spec, device="cuda" if device == "cuda" else "cpu", bf16_supported=bf16
        )
    console.print(
        f"{spec.name}: one trial on {device} ({memory.precision}), batch {spec.probe.batch_size}, "
        f"response {spec.probe.response_length} tokens",
        highlight=False,
        soft_wrap=True,
    )
    for line in memory.lines():
        console.print(line, highlight=False, soft_wrap=True)
    if device == "cpu":
        return
    gpus_per_trial = spec.resources.gpus_per_trial
    for text, size in sizes:
        fits = memory.trials_per_gpu(size)
        try:
            verdict = check_gpu_fit(memory, gpus_per_trial, size) or "ok"
        except InvalidSpecError as exc:  # the trial does not fit at all
            verdict = str(exc)
        console.print(
            f"GPU {text} ({size / GIB:.0f} GiB): {fits} trial(s) fit; "
            f"gpus_per_trial={gpus_per_trial:g}: {verdict}",
            highlight=False,
            soft_wrap=True,
        )
