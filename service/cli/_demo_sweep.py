"""The sweep ``bai-sweep demo`` runs on the demo world (as ``examples/demo-sweep.yaml``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.cli._app import console

if TYPE_CHECKING:
    from sweeps.demo import DemoWorld
    from sweeps.spec import SweepSpec

#: Everything of the demo sweep except the model paths (``examples/demo-sweep.yaml`` too).
DEMO_SWEEP: dict[str, Any] = {
    "name": "demo-sweep",
    "search": {
        "alpha": [0.0, 1.0],
        "weights": "simplex",
        "n_trials": 8,
        "sampler": "tpe",
        "seed": 0,
        "seed_points": ["baselines", {"alpha": 0.2}, {"alpha": 0.5}],
    },
    "objectives": [
        {"name": "stability", "direction": "maximize"},
        {"name": "benchmark", "direction": "maximize"},
    ],
    # Successive halving probes every candidate once for 6 updates and the best 2 for the full
    # 8 on 3 seeds, so the front carries confidence intervals; the demo, world build and install
    # included, must fit in 8 minutes. (Three probe seeds ranked the demo world's candidates
    # like long runs at Spearman rho +0.93, one seed at +0.75: docs/ratio-selection.md.)
    "probe": {
        "steps": 8,
        "repeats": 3,
        "batch_size": 8,
        "response_length": 128,
        "missing_eos_penalty": 1.0,
        "kl_coef": 0.05,
        "learning_rate": 3.0e-5,
    },
    "benchmarks": {
        "selection": ["bai_facts_mc", "bai_arith_gen"],
        "report": [],
        "limit": 32,
        "batch_size": 32,
    },
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent_trials": 2},
    "nightly": {"tolerance": 0.02},
    # Successive halving: 8 candidates probed for 6 updates on 1 seed (two stability windows,
    # the shortest probe whose stability score tells candidates apart), the best 2 (by
    # non-dominated rank) for the full 8 on 3 seeds: 48 + 48 of the 192 updates 8 full probes
    # cost. The front and the recommendation use those 2 only.
    "fidelity": {"enabled": True, "rungs": 2, "eta": 4, "min_steps": 6},
}


def demo_sweep_spec(world: DemoWorld) -> SweepSpec:
    """The demo sweep over ``world``'s checkpoints."""
    from sweeps.spec import SweepSpec

    models = {
        "base": str(world.base),
        "sft": [str(path) for path in world.sfts],
        "reward_rule": world.reward_rule,
        "prompts": str(world.prompts),
    }
    return SweepSpec.parse({**DEMO_SWEEP, "models": models}, source="demo sweep")


def link_current(world: DemoWorld) -> None:
    """Point ``<demo-world cache>/current`` at ``world`` (``examples/demo-sweep.yaml`` uses it)."""
    link = world.root.parent / "current"
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.readlink() == world.root.resolve():
            return
        link.unlink()
    link.symlink_to(world.root.resolve(), target_is_directory=True)


def run_demo_sweep(world: DemoWorld) -> None:
    """Run the demo sweep on ``world`` (resuming an interrupted one), print its front."""
    from service.cli._service import load_settings
    from service.cli._sweep_session import print_summary, run_synchronously
    from storage import init_database

    settings = load_settings()
    link_current(world)
    spec = demo_sweep_spec(world)
    engine = init_database(settings.resolved_database_url)
    result = run_synchronously(settings=settings, engine=engine, spec=spec, report_dir=None)
    print_summary(result)
    console.print(
        "inspect it: bai-sweep dashboard (Optuna), or re-run it nightly with "
        "bai-sweep run examples/demo-sweep.yaml",
        highlight=False,
        soft_wrap=True,
    )
