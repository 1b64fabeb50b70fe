"""``bai-sweep demo``: build (or reuse) the demo world and run what the pipeline has on it.

``bai-sweep demo build`` only builds the world and prints its scores and precondition gates.
``bai-sweep demo`` builds it too, BAI-merges its checkpoints in memory and compares the greedy
answers (K and R) of base, both SFT models and the BAI actor on the probe prompts, then runs
a successive-halving sweep on the world (``service.cli._demo_sweep``) and prints its Pareto
front and where its report is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli._app import app, console, user_errors, warn

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
DEMO_NEW_TOKENS = 160
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
    _check_demo_sweep(world)
    _print_gates(world)
    _compare_bai_actor(world)
    run_demo_sweep(world)


def _check_demo_sweep(world: DemoWorld) -> None:
    """The pre-flight of ``bai-sweep run`` on the demo sweep, before any model is loaded: a
    sweep that can never run on this world exits 2 with one line."""
    from service.cli._demo_sweep import demo_sweep_spec
    from service.settings import get_settings
    from sweeps.preflight import PreflightError, check_spec

    settings = get_settings()
    spec = demo_sweep_spec(world)
    with user_errors(PreflightError):
        check_spec(
            spec,
            trust_remote_code=settings.trust_remote_code,
            local_devices=settings.ray_address is None,
        )
    for warning in spec.short_window_warnings():
        warn(warning)


@demo_app.command()
def build(out: OutOption = None, seed: SeedOption = 0, progress: ProgressOption = True) -> None:
    """Build (or reuse, cached by recipe and seed) the demo world and print its gates."""
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
    evaluation = record["gates"]
    kernels = record.get("kernels", {})
    cpu = f" on {kernels['cpu']}" if "cpu" in kernels else ""
    console.print(
        f"built in      {record['build_seconds']:.0f} s (seed {world.seed}, "
        f"recipe {world.recipe_hash}, torch {record['versions']['torch']}, "
        f"{kernels.get('capability', 'unrecorded')} kernels{cpu}); reward rule "
        f"{record['reward_rule']}, {record['max_positions']} positions",
        highlight=False,
    )
    counts = evaluation["heldout_counts"]
    models = Table(
        title=f"held-out scores (K: {counts['K']} fact questions, 4 choices; R: {counts['R']} "
        "arithmetic problems, greedy)",
        title_justify="left",
    )
    for column in ("model", "K", "R", "R length", "ends with eos", "task vector"):
        models.add_column(column, justify="left" if column == "model" else "right")
    ratios = evaluation["task_vector_ratio"]
    for name, stats in evaluation["scores"].items():
        models.add_row(
            name,
            f"{stats['K']:.1%}",
            f"{stats['R']:.1%}",
            f"{stats['mean_length']:.1f}",
            f"{stats['finished_rate']:.0%}",
            f"{ratios[name]:.1%}" if name in ratios else "-",
        )
    console.print(models)
    gates = Table(title="precondition gates", title_justify="left")
    for column in ("gate", "value", "needs", "passed"):
        gates.add_column(column, justify="left" if column == "gate" else "right")
    from sweeps.demo.world import UNENFORCED_GATES

    for check in world.gates:
        verdict = "[green]yes[/]" if check.passed else "[red]NO[/]"
        if not check.passed and check.name in UNENFORCED_GATES:
            verdict = "[yellow]no (not enforced)[/]"
        needs = f"{check.comparison} {check.threshold:g}"
        gates.add_row(check.name, f"{check.value:.3f}", needs, verdict)
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
    domains = [row["domain"] for row in rows]
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
    table.add_column("K accuracy", justify="right")
    table.add_column("R accuracy", justify="right")
    table.add_column("R length", justify="right")
    table.add_column("examples")
    for name, model in models.items():
        generations = generate(model, tokenizer, prompts, max_new_tokens=DEMO_NEW_TOKENS)
        cells = []
        for domain in ("K", "R"):
            picked = [i for i, d in enumerate(domains) if d == domain]
            stats = evaluate_generations(
                [generations[i] for i in picked], [answers[i] for i in picked]
            )
            cells.append(stats)
        examples = "\n".join(
            f"{g.prompt} -> {g.text or '(empty)'}" for g in generations[:SHOWN_EXAMPLES]
        )
        table.add_row(
            name,
            f"{cells[0].accuracy:.1%}",
            f"{cells[1].accuracy:.1%}",
            f"{cells[1].mean_length:.1f}",
            examples,
        )
    console.print(table)
