"""Probe the demo world from ``sft-reasoning`` alone and from a balanced BAI actor.

Both actors are built in memory by the merge engine (``MergeInputs.build_actor``):
``sft-reasoning`` is ``w = (0, 1), alpha = 0`` and the balanced BAI actor is
``w = (0.5, 0.5), alpha = 0.5`` (half base, half the equal mix of the two SFT models). Each is
probed with the world's reward rule and probe prompts, same config and seed, and the script
prints both stability summaries, sample responses and writes the curves to one PNG.

    .venv/bin/python benchmarks/demo_paradigms.py                  # product defaults
    .venv/bin/python benchmarks/demo_paradigms.py --learning-rate 3e-5 --steps 40
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
ACTORS = {
    "sft-reasoning (w=(0,1), alpha=0)": ([0.0, 1.0], 0.0),
    "balanced BAI (w=(0.5,0.5), alpha=0.5)": ([0.5, 0.5], 0.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--world",
        type=Path,
        default=REPO / ".bai-sweep" / "demo-world",
        help="demo-world cache directory (built if needed) or one built world's directory",
    )
    parser.add_argument("--out", type=Path, default=REPO / ".bai-sweep" / "demo-paradigms")
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=128)
    parser.add_argument("--truncation-penalty", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: ProbeConfig's")
    parser.add_argument("--kl-coef", type=float, default=None, help="default: ProbeConfig's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from transformers import AutoTokenizer

    from evaluators.plots import plot_probe_curves
    from evaluators.probe import ProbeConfig, ProbeDivergedError, run_probe
    from evaluators.reward_rules import REWARD_RULES
    from sweeps.demo import build_world, load_world
    from sweeps.merge import load_merge_inputs

    world = (
        load_world(args.world)
        if (args.world / "world.json").is_file()
        else build_world(args.world, seed=0, progress=True)
    )
    inputs = load_merge_inputs(world.base, world.sfts)
    reward = REWARD_RULES[world.reward_rule]
    tokenizer = AutoTokenizer.from_pretrained(world.sft_reasoning)
    overrides = {
        name: value
        for name, value in (("learning_rate", args.learning_rate), ("kl_coef", args.kl_coef))
        if value is not None
    }
    config = ProbeConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        response_length=args.response_length,
        seed=args.seed,
        missing_eos_penalty=args.truncation_penalty,
        early_stop=False,  # show the whole curve of both actors
        **overrides,
    )
    print(f"world {world.root} ({world.recipe_hash})")
    print(f"probe config: {config.model_dump_json()}")
    results = {}
    for label, (weights, alpha) in ACTORS.items():
        actor = inputs.build_actor(weights, alpha)
        started = time.perf_counter()
        try:
            result = run_probe(actor, tokenizer, reward, world.prompts, config)
        except ProbeDivergedError as error:
            result = error.result
        results[label] = result
        stability = result.stability
        print(f"\n== {label}: {len(result.steps)} steps in {time.perf_counter() - started:.0f} s")
        print(f"   stop: {result.stop_reason.value}  {result.detail or ''}")
        print(
            "   length "
            + " ".join(f"{value:.1f}" for value in result.curve("length_mean"))
            + "\n   reward "
            + " ".join(f"{value:.2f}" for value in result.curve("reward_mean"))
            + "\n   kl     "
            + " ".join(f"{value:.2f}" for value in result.curve("kl"))
        )
        if stability is not None:
            print(f"   stability: {stability.model_dump_json()}")
        for step in (1, len(result.steps)):
            sample = next(response for response in result.responses if response.step == step)
            print(f"   step {step}: {sample.prompt!r} -> {sample.response!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    figure = plot_probe_curves(
        {label: result.steps for label, result in results.items()},
        args.out / "demo_paradigms.png",
        title=f"demo world probes (lr {config.learning_rate:g}, kl_coef {config.kl_coef:g})",
    )
    summary = {
        label: {
            "stability": result.stability.model_dump() if result.stability else None,
            "stop_reason": result.stop_reason.value,
            "length_mean": result.curve("length_mean"),
            "reward_mean": result.curve("reward_mean"),
            "kl": result.curve("kl"),
        }
        for label, result in results.items()
    }
    (args.out / "demo_paradigms.json").write_text(
        json.dumps({"config": config.model_dump(), "runs": summary}, indent=2)
    )
    print(f"\nwrote {figure} and {args.out / 'demo_paradigms.json'}")


if __name__ == "__main__":
    main()
