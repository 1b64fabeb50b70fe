"""``bai-sweep demo``: build (or reuse) the demo world and run what the pipeline has on it.

``bai-sweep demo build`` only builds the world and prints its quality gates. ``bai-sweep demo``
builds it too, BAI-merges its checkpoints in memory and compares the greedy answers of base,
both SFT models and the BAI actor on the probe prompts, then runs an 8-trial sweep on the
world (``service.cli._demo_sweep``) and prints its Pareto front and where its report is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli._app import app, console, user_errors

if TYPE_CHECKING:
    from sweeps.demo import DemoWorld

demo_app = typer.Typer(
    help="The demo world: small checkpoints trained here that reproduce the BAI setting.",
    no_args_is_help=False,
)
app.add_typer(demo_app, name="demo")

OutOption = Annotated[
    Path | None,
    typer.Option(help="Cache directory of demo worlds. Default: <data dir>/demo-world."),
]
SeedOption = Annotated[int, typer.Option(help="Seed of the world (data, init, batches).")]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show the build's progress display.")
]

DEMO_WEIGHTS = (0.5, 0.5)
DEMO_ALPHA = 0.5
DEMO_PROMPTS = 64
SHOWN_EXAMPLES = 2


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    out: OutOption = None,
    seed: SeedOption = 0,
    progress: ProgressOption = True,
) -> None:
    """Build or reuse the demo world, compare a BAI actor with its parents, run a sweep."""
    from service.cli._demo_sweep import run_demo_sweep

    if ctx.invoked_subcommand is not None:
        return
    world = _build(out, seed, progress)
    _print_gates(world)
    _compare_bai_actor(world)
    run_demo_sweep(world)


@demo_app.command()
def build(out: OutOption = None, seed: SeedOption = 0, progress: ProgressOption = True) -> None:
    """Build (or reuse, cached by recipe and seed) the demo world and print its quality gates."""
    _print_gates(_build(out, seed, progress))


def _build(out: Path | None, seed: int, progress: bool) -> DemoWorld:
    from service.settings import get_settings
    from sweeps.demo import build_world

    out_dir = out if out is not None else get_settings().data_dir / "demo-world"
    from service.cli._demo_sweep import link_current

    with user_errors():
        world = build_world(out_dir, seed=seed, progress=progress)
    link_current(world)
    console.print(f"demo world    {world.root}", highlight=False)
    return world


def _print_gates(world: DemoWorld) -> None:
    from rich.table import Table

    record = world.metrics
    console.print(
        f"built in      {record['build_seconds']:.0f} s (seed {world.seed}, "
        f"recipe {world.recipe_hash}, torch {record['versions']['torch']})",
        highlight=False,
    )
    models = Table(title="held-out greedy answers", title_justify="left")
    for column in ("model", "parameters", "accuracy", "mean length", "ends with eos"):
        models.add_column(column, justify="left" if column == "model" else "right")
    heldout = record["gates"]["heldout"]
    for name, info in record["models"].items():
        stats = heldout.get(name)
        cells = ["-", "-", "-"]
        if stats:
            cells = [
                f"{stats['accuracy']:.1%}",
                f"{stats['mean_length']:.1f}",
                f"{stats['finished_rate']:.0%}",
            ]
        models.add_row(info["path"], f"{info['parameters']:,}", *cells)
    console.print(models)
    gates = Table(title="quality gates", title_justify="left")
    for column in ("gate", "value", "needs", "passed"):
        gates.add_column(column, justify="left" if column == "gate" else "right")
    for check in world.gates:
        verdict = "[green]yes[/]" if check.passed else "[red]NO[/]"
        gates.add_row(check.name, f"{check.value:.3f}", f">= {check.threshold:.3f}", verdict)
    console.print(gates)


def _compare_bai_actor(world: DemoWorld) -> None:
    from rich.table import Table
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from sweeps.demo import evaluate_generations, generate

    transformers_logging.disable_progress_bar()
    from sweeps.merge import load_merge_inputs

    lines = world.prompts.read_text().splitlines()[:DEMO_PROMPTS]
    rows = [json.loads(line) for line in lines]
    prompts = [row["prompt"] for row in rows]
    answers = [row["answer"] for row in rows]
    tokenizer = AutoTokenizer.from_pretrained(world.base)
    with user_errors():
        inputs = load_merge_inputs(world.base, world.sfts)
        actor = inputs.build_actor(list(DEMO_WEIGHTS), DEMO_ALPHA)
    weights = ", ".join(f"{w:g}" for w in DEMO_WEIGHTS)
    models = {
        "base": AutoModelForCausalLM.from_pretrained(world.base),
        "sft-instruct": AutoModelForCausalLM.from_pretrained(world.sft_instruct),
        "sft-reasoning": AutoModelForCausalLM.from_pretrained(world.sft_reasoning),
        f"BAI alpha={DEMO_ALPHA:g} w=({weights})": actor,
    }
    table = Table(
        title=f"greedy answers on {len(prompts)} probe prompts (never trained on)",
        title_justify="left",
    )
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_column("mean length", justify="right")
    table.add_column("examples")
    for name, model in models.items():
        generations = generate(model, tokenizer, prompts, max_new_tokens=48)
        stats = evaluate_generations(generations, answers)
        examples = "\n".join(
            f"{g.prompt} -> {g.text or '(empty)'}" for g in generations[:SHOWN_EXAMPLES]
        )
        table.add_row(name, f"{stats.accuracy:.1%}", f"{stats.mean_length:.1f}", examples)
    console.print(table)
