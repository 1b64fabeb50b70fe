"""Benchmark of lm-eval scoring (issue 5 targets).

Measures, on the demo world (built or reused under ``--world-dir``) and BAI actors merged from
it in memory, with 2 torch threads:

1. the one-off costs: importing lm-eval, and building a :class:`BenchmarkRunner` (rendering the
   shipped suite, indexing it, loading the task data);
2. scoring one actor on the selection suite, three ways, over ``--actors`` different merges:
   - ``one-shot``: :func:`evaluate_benchmarks` per actor (tasks loaded every time);
   - ``runner``: one runner, a fresh ``HFLM`` wrapper per actor (what ``score(model)`` does);
   - ``kept wrapper``: one runner and one ``HFLM`` around one model whose weights are swapped in
     place (``load_state_dict``) for each actor (``score(runner.wrap(model))``);
   and whether all three give identical scores for every actor;
3. the pieces: constructing an ``HFLM`` around a loaded model, and the environment report that
   ``lm_eval.simple_evaluate`` gathers on every call;
4. the world's own models (base, instruct SFT, reasoning SFT) on selection and report tasks.

Usage::

    .venv/bin/python benchmarks/lmeval_speed.py [--world-dir DIR | --world WORLD] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATIOS = [((0.5, 0.5), 0.1), ((0.5, 0.5), 0.5), ((0.3, 0.7), 0.3), ((0.7, 0.3), 0.7)]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-dir", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--world", type=Path, help="an already built world (holds world.json)")
    parser.add_argument("--limit", type=int, default=None, help="documents per task")
    parser.add_argument("--actors", type=int, default=len(RATIOS), choices=range(1, 5))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--quick-world",
        action="store_true",
        help="use a tiny, briefly trained world (smoke test of this script: scores meaningless)",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from evaluators.benchmarks import BenchmarkConfig, BenchmarkRunner, evaluate_benchmarks
    from sweeps.demo.world import StageRecipe, WorldRecipe, build_world, load_world
    from sweeps.merge import load_merge_inputs

    figures: dict[str, object] = {"threads": args.threads, "limit": args.limit}
    recipe = None
    if args.quick_world:
        stage = StageRecipe(steps=20, batch_size=16, learning_rate=3e-3)
        recipe = WorldRecipe(
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            train_problems=500,
            pretrain_documents=500,
            base=stage,
            instruct=stage,
            reasoning=stage,
            heldout_problems=20,
            probe_prompts=8,
            enforce_gates=False,
        )
    if args.world is not None:
        world = load_world(args.world)
    else:
        world = build_world(args.world_dir, progress=True, recipe=recipe)
    started = time.perf_counter()
    import lm_eval  # noqa: F401  (timed: the first import in this process)
    from lm_eval.loggers.utils import add_env_info, get_git_commit_hash
    from lm_eval.models.huggingface import HFLM  # noqa: F401

    figures["import_lm_eval_s"] = time.perf_counter() - started

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world.base)
    inputs = load_merge_inputs(world.base, world.sfts)
    ratios = RATIOS[: args.actors]
    selection = BenchmarkConfig(limit=args.limit, batch_size=args.batch_size, report=[])

    started = time.perf_counter()
    runner = BenchmarkRunner(selection, tokenizer)
    figures["runner_setup_s"] = time.perf_counter() - started

    one_shot, fresh, kept = [], [], []
    one_shot_s, fresh_s, kept_s = [], [], []
    for weights, alpha in ratios:
        actor = inputs.build_actor(weights, alpha)
        started = time.perf_counter()
        one_shot.append(evaluate_benchmarks(actor, tokenizer, selection))
        one_shot_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh.append(runner.score(actor))
        fresh_s.append(time.perf_counter() - started)

    holder = inputs.build_actor(*ratios[0])
    wrapper = runner.wrap(holder)
    for weights, alpha in ratios:
        holder.load_state_dict(inputs.merged_state_dict(weights, alpha))
        started = time.perf_counter()
        kept.append(runner.score(wrapper))
        kept_s.append(time.perf_counter() - started)

    identical = all(
        a.per_task == b.per_task == c.per_task
        for a, b, c in zip(one_shot, fresh, kept, strict=True)
    )
    figures.update(
        {
            "one_shot_per_actor_s": one_shot_s,
            "runner_per_actor_s": fresh_s,
            "kept_wrapper_per_actor_s": kept_s,
            "identical_scores": identical,
            "actor_benchmarks": {
                f"w={w} alpha={a}": r.benchmark for (w, a), r in zip(ratios, fresh, strict=True)
            },
        }
    )

    hflm_s = []
    for _ in range(10):
        started = time.perf_counter()
        runner.wrap(holder)
        hflm_s.append(time.perf_counter() - started)
    started = time.perf_counter()
    add_env_info({})
    get_git_commit_hash()
    figures["hflm_construction_s"] = _median(hflm_s)
    figures["simple_evaluate_env_report_s"] = time.perf_counter() - started

    full = BenchmarkConfig(limit=args.limit, batch_size=args.batch_size)
    full_runner = BenchmarkRunner(full, tokenizer)
    world_scores = {}
    for name, path in (
        ("base", world.base),
        ("sft_instruct", world.sft_instruct),
        ("sft_reasoning", world.sft_reasoning),
    ):
        result = full_runner.score(AutoModelForCausalLM.from_pretrained(path))
        world_scores[name] = {
            "benchmark": result.benchmark,
            **{task: score.score for task, score in result.per_task.items()},
        }
    figures["world_models"] = world_scores

    print()
    print(f"torch threads {args.threads}, limit {args.limit or 'all documents'}")
    print(f"import lm-eval                      {figures['import_lm_eval_s']:.2f} s")
    print(f"BenchmarkRunner setup (selection)  {figures['runner_setup_s']:.2f} s")
    for label, times in (
        ("one-shot evaluate_benchmarks", one_shot_s),
        ("runner, fresh HFLM", fresh_s),
        ("runner, kept HFLM, swapped weights", kept_s),
    ):
        print(
            f"score one actor, {label:<35} min {min(times):.2f} s  median {_median(times):.2f} s"
            f"  ({', '.join(f'{t:.2f}' for t in times)})"
        )
    print(f"identical scores across the 3 ways  {identical}")
    print(f"HFLM construction                   {figures['hflm_construction_s'] * 1000:.1f} ms")
    print(f"simple_evaluate env report per call {figures['simple_evaluate_env_report_s']:.2f} s")
    print("world models (benchmark = mean of selection):")
    for name, scores in world_scores.items():
        print(f"  {name:<14} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
