"""Replicate the BAI paper's experiment on the demo world and write docs/paper-replication.md.

Zheng et al. (arXiv 2509.00309) merge an instruct and a reasoning SFT model (w = (0.5, 0.5)),
then mix in the base model with weight alpha, and RL-train each actor. This script does the
same on the demo world: every actor below is built in memory by the merge engine, RL-trained
by the probe (``evaluators.run_probe``: TRL's PPOTrainer with the world's ``bai_world`` rule
reward) for ``--steps`` PPO updates on each of ``--seeds`` seeds, then scored with lm-eval on
K (``bai_facts_mc``), R (``bai_arith_gen``) and the held-out R report task
(``bai_arith_long_gen``). It writes the analogue of the paper's tables (mean and spread over
seeds) and a verdict per finding, decided by criteria fixed in this file before the run.

    .venv/bin/python benchmarks/paper_replication.py                 # writes the doc
    .venv/bin/python benchmarks/paper_replication.py --seeds 1 --steps 10 --out /tmp/r.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Actor:
    """One RL starting point: the BAI merge ``alpha * base + (1 - alpha) * sum w_i sft_i``."""

    label: str
    weights: tuple[float, float]
    alpha: float
    paper: str
    """What it stands for in the paper."""


ACTORS = (
    Actor("sft-instruct", (1.0, 0.0), 0.0, "P1: instruct SFT + RL (no BAI)"),
    Actor("sft-reasoning", (0.0, 1.0), 0.0, "P3: RL on the reasoning SFT (no BAI)"),
    Actor("stage-1 only", (0.5, 0.5), 0.0, "stage-1 merge only (alpha = 0)"),
    *(
        Actor(f"BAI alpha={alpha}", (0.5, 0.5), alpha, "BAI, the paper's grid")
        for alpha in (0.1, 0.2, 0.5, 0.7, 0.9)
    ),
)
GRID = [actor for actor in ACTORS if actor.label.startswith("BAI")]
SELECTION = ("bai_facts_mc", "bai_arith_gen")
REPORT = ("bai_arith_long_gen",)

# Verdict criteria, fixed before any run (see the doc's "How the verdicts are decided").
COLLAPSE_SEEDS = 2
"""(1): sft-reasoning's probe must count as collapsed on at least this many seeds."""
DIP_SPREADS = 0.5
"""(2): the reward must dip by at least this many initial reward spreads ..."""
RECOVERY_SEEDS = 2
"""... and regain its initial level within the run on at least this many seeds."""
BALANCED = (0.5, 0.7)
"""(4): the balanced ratios; one of them must have the best mean stability score of the grid
and a non-negative mean length trend."""

_STATE: dict[str, Any] = {}


def _worker_init(world_root: str, threads: int) -> None:
    """Per worker: offline, single-threaded torch, the world's merge inputs and task runner."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from evaluators.benchmarks import BenchmarkConfig, BenchmarkRunner
    from sweeps.demo import load_world
    from sweeps.merge import load_merge_inputs

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    world = load_world(world_root)
    tokenizer = AutoTokenizer.from_pretrained(world.base)
    _STATE["world"] = world
    _STATE["tokenizer"] = tokenizer
    _STATE["inputs"] = load_merge_inputs(world.base, world.sfts)
    _STATE["runner"] = BenchmarkRunner(
        BenchmarkConfig(
            selection=list(SELECTION),
            report=list(REPORT),
            limit=_STATE.get("limit"),
            batch_size=64,
            device="cpu",
            bootstrap_iters=0,
        ),
        tokenizer,
    )


def _set_limit(limit: int) -> None:
    _STATE["limit"] = limit


def _scores(model: Any) -> dict[str, float]:
    result = _STATE["runner"].score(model)
    return {name: task.score for name, task in result.per_task.items()}


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One job: score an actor before RL (``seed`` None), or RL-train it and score it after."""
    from evaluators.probe import ProbeConfig, run_probe
    from evaluators.reward_rules import REWARD_RULES
    from sweeps.demo import evaluate_generations, generate

    started = time.perf_counter()
    world, tokenizer = _STATE["world"], _STATE["tokenizer"]
    actor = _STATE["inputs"].build_actor(list(job["weights"]), job["alpha"])
    out: dict[str, Any] = {"label": job["label"], "seed": job["seed"]}
    if job["seed"] is not None:
        config = ProbeConfig(seed=job["seed"], early_stop=False, **job["probe"])
        result = run_probe(actor, tokenizer, REWARD_RULES[world.reward_rule], world.prompts, config)
        out["curves"] = {
            field: result.curve(field) for field in ("length_mean", "reward_mean", "kl")
        }
        out["stability"] = result.stability.model_dump() if result.stability else None
        out["samples"] = [
            {"prompt": r.prompt, "response": r.response, "score": r.score}
            for r in result.responses
            if r.step == result.steps[-1].step
        ][:2]
    out["scores"] = _scores(actor)
    problems = [row for row in _read_prompts(world.prompts) if row["domain"] == "R"][:64]
    generations = generate(actor, tokenizer, [row["prompt"] for row in problems], 160)
    stats = evaluate_generations(generations, [row["answer"] for row in problems])
    out["greedy_length"] = stats.mean_length
    out["seconds"] = time.perf_counter() - started
    return out


def _read_prompts(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: list[float], digits: int = 3) -> str:
    mean, sd = _mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _benchmark(scores: dict[str, float]) -> float:
    return statistics.fmean(scores[name] for name in SELECTION)


def _final_length(curve: list[float], tail: int = 5) -> float:
    return statistics.fmean(curve[-tail:])


def _verdicts(runs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, bool, str]]:
    reasoning = runs["sft-reasoning"]
    collapsed = sum(bool(r["stability"] and r["stability"]["collapsed"]) for r in reasoning)
    retention = [r["stability"]["length_retention"] for r in reasoning]
    finding1 = (
        "(1) RL on sft-reasoning collapses its length",
        collapsed >= COLLAPSE_SEEDS,
        f"collapsed (length retention < 0.5) on {collapsed} of {len(reasoning)} seeds; "
        f"retention {_fmt(retention)}",
    )
    dips = [r["stability"]["reward_dip"] for r in reasoning]
    recovered = sum(
        r["stability"]["reward_dip"] >= DIP_SPREADS
        and r["stability"]["reward_recovery_steps"] is not None
        for r in reasoning
    )
    finding2 = (
        "(2) the reward dips, then recovers (hockey stick), on sft-reasoning",
        recovered >= RECOVERY_SEEDS,
        f"dip of >= {DIP_SPREADS} initial spreads followed by recovery on {recovered} of "
        f"{len(reasoning)} seeds; dip {_fmt(dips)} spreads",
    )
    bench = {
        a.label: statistics.fmean(_benchmark(r["scores"]) for r in runs[a.label]) for a in GRID
    }
    best = max(bench, key=bench.__getitem__)
    finding3 = (
        "(3) SFT-heavy alpha = 0.1 is best on benchmarks after RL",
        best == "BAI alpha=0.1",
        "mean benchmark after RL: "
        + ", ".join(f"{label.removeprefix('BAI ')} {value:.3f}" for label, value in bench.items())
        + f"; best {best.removeprefix('BAI ')}",
    )
    stability = {
        a.label: statistics.fmean(r["stability"]["stability"] for r in runs[a.label]) for a in GRID
    }
    trend = {
        a.label: statistics.fmean(r["stability"]["length_trend"] for r in runs[a.label])
        for a in GRID
    }
    most_stable = max(stability, key=stability.__getitem__)
    balanced = {f"BAI alpha={alpha}" for alpha in BALANCED}
    finding4 = (
        "(4) a balanced alpha keeps length growing and is the most stable",
        most_stable in balanced and trend[most_stable] >= 0,
        "mean stability score: "
        + ", ".join(f"{k.removeprefix('BAI ')} {v:.3f}" for k, v in stability.items())
        + "; mean length trend: "
        + ", ".join(f"{k.removeprefix('BAI ')} {v:+.2f}" for k, v in trend.items())
        + f"; most stable {most_stable.removeprefix('BAI ')}",
    )
    return [finding1, finding2, finding3, finding4]


def _write_doc(
    path: Path,
    args: argparse.Namespace,
    world: Any,
    probe: dict[str, Any],
    before: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    wall: float,
    loads: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    from sweeps.demo.world import cpu_model

    scores = world.metrics["gates"]
    lines = [
        "# Paper replication on the demo world",
        "",
        "Generated by `.venv/bin/python benchmarks/paper_replication.py "
        + " ".join(sys.argv[1:])
        + "` on the current code; do not edit by hand.",
        "",
        f"World `{world.recipe_hash}` (seed {world.seed}, base weights "
        f"`{world.weights_hashes['base'][:12]}…`, gates "
        f"{'passed' if scores['passed'] else 'FAILED'}; see `docs/demo-world.md`). Probe: "
        f"TRL PPOTrainer, {probe['steps']} PPO updates of {probe['batch_size']} prompts, "
        f"response length {probe['response_length']}, learning rate {probe['learning_rate']}, "
        f"KL coefficient {probe['kl_coef']}, truncation penalty "
        f"{probe['missing_eos_penalty']}, reward rule `{world.reward_rule}` (correctness minus "
        f"a per-token cost); seeds {', '.join(map(str, range(args.seeds)))}. Scores after RL "
        f"by lm-eval ({args.limit} documents per task): K = `bai_facts_mc`, R = "
        "`bai_arith_gen`, R-long = `bai_arith_long_gen` (held out), benchmark = mean of K and R.",
        "",
        f"Wall time {wall / 60:.1f} min with {args.workers} worker processes on "
        f"{os.cpu_count()} cores of {cpu_model()}; load average at start {loads[0][0]:.1f}, at end "
        f"{loads[1][0]:.1f} (other jobs shared the CPU).",
        "",
        "## Verdicts",
        "",
    ]
    for title, held, evidence in _verdicts(runs):
        lines.append(f"- **{title}: {'reproduced' if held else 'not reproduced'}.** {evidence}.")
    lines += [
        "",
        "## Before RL (greedy, one evaluation per actor)",
        "",
        "| actor | stands for | K | R | R-long | benchmark | greedy R length |",
        "|---|---|---|---|---|---|---|",
    ]
    for actor in ACTORS:
        row = before[actor.label]
        s = row["scores"]
        label = "sft-reasoning (P2: no RL)" if actor.label == "sft-reasoning" else actor.label
        lines.append(
            f"| {label} | {actor.paper} | {s['bai_facts_mc']:.3f} | {s['bai_arith_gen']:.3f} | "
            f"{s['bai_arith_long_gen']:.3f} | {_benchmark(s):.3f} | {row['greedy_length']:.1f} |"
        )
    lines += [
        "",
        f"## After RL (mean ± standard deviation over {args.seeds} seeds)",
        "",
        "| actor | K | R | R-long | benchmark | greedy R length |",
        "|---|---|---|---|---|---|",
    ]
    for actor in ACTORS:
        rows = runs[actor.label]
        lines.append(
            f"| {actor.label} | "
            + " | ".join(_fmt([r["scores"][name] for r in rows]) for name in (*SELECTION, *REPORT))
            + f" | {_fmt([_benchmark(r['scores']) for r in rows])} | "
            f"{_fmt([r['greedy_length'] for r in rows], 1)} |"
        )
    lines += [
        "",
        "## Training dynamics (mean ± standard deviation over seeds)",
        "",
        "Length: mean sampled response length in tokens at the first update and over the last "
        "five; retention and trend as in `docs/stability-metrics.md`; dip in initial reward "
        "spreads; recovery: update at which the reward regained its initial level.",
        "",
        "| actor | length first | length last | retention | trend | collapsed | reward first "
        "| reward last | dip | recovered | stability |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for actor in ACTORS:
        rows = runs[actor.label]
        st = [r["stability"] for r in rows]
        lines.append(
            f"| {actor.label} | {_fmt([r['curves']['length_mean'][0] for r in rows], 1)} | "
            f"{_fmt([_final_length(r['curves']['length_mean']) for r in rows], 1)} | "
            f"{_fmt([s['length_retention'] for s in st], 2)} | "
            f"{_fmt([s['length_trend'] for s in st], 2)} | "
            f"{sum(s['collapsed'] for s in st)}/{len(st)} | "
            f"{_fmt([r['curves']['reward_mean'][0] for r in rows])} | "
            f"{_fmt([_final_length(r['curves']['reward_mean']) for r in rows])} | "
            f"{_fmt([s['reward_dip'] for s in st], 2)} | "
            f"{sum(s['reward_recovery_steps'] is not None for s in st)}/{len(st)} | "
            f"{_fmt([s['stability'] for s in st])} |"
        )
    lines += [
        "",
        "## Length curves (seed 0, every fifth update)",
        "",
        "| actor | " + " | ".join(str(i + 1) for i in range(0, probe["steps"], 5)) + " |",
        "|---|" + "---|" * len(range(0, probe["steps"], 5)),
    ]
    for actor in ACTORS:
        curve = runs[actor.label][0]["curves"]["length_mean"]
        lines.append(
            f"| {actor.label} | "
            + " | ".join(f"{curve[i]:.0f}" for i in range(0, len(curve), 5))
            + " |"
        )
    lines += ["", "## Sample responses at the last update (seed 0)", ""]
    for actor in ACTORS:
        for sample in runs[actor.label][0]["samples"][:1]:
            lines.append(
                f"- {actor.label}: `{sample['prompt']}` -> `{sample['response']}` "
                f"(score {sample['score']:.2f})"
            )
    lines += ["", "## How the verdicts are decided", "", _CRITERIA]
    lines += ["", "## Attempts", "", _ATTEMPTS]
    path.write_text("\n".join(lines) + "\n")


_CRITERIA = f"""Fixed in `benchmarks/paper_replication.py` before the runs:
(1) the probe on sft-reasoning counts as collapsed (length retention below 0.5) on at least
{COLLAPSE_SEEDS} seeds; (2) on sft-reasoning the reward falls by at least {DIP_SPREADS} initial
reward spreads and regains its initial level within the run on at least {RECOVERY_SEEDS}
seeds; (3) alpha = 0.1 has the highest mean benchmark after RL among the paper's grid;
(4) one of the balanced ratios alpha in {BALANCED} has the highest mean stability score of
the grid and a non-negative mean length trend."""


_ATTEMPTS = """The world's recipe was fixed before this run, by its precondition gates only (its
attempts are listed in `docs/demo-world.md`); the verdict criteria and the probe settings were
fixed before this run too and nothing was changed after seeing its results. Before it, one
3-update, 1-seed run on an earlier world only checked that the script works."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "paper-replication.md")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--response-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--truncation-penalty", type=float, default=1.0)
    parser.add_argument("--limit", type=int, default=50, help="lm-eval documents per task")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.seeds < 1 or args.steps < 1 or args.workers < 1:
        parser.error("--seeds, --steps and --workers must be positive")

    from sweeps.demo import build_world, load_world

    loads_start = os.getloadavg()
    started = time.perf_counter()
    world = (
        load_world(args.world)
        if (args.world / "world.json").is_file()
        else build_world(args.world, seed=0, progress=True)
    )
    probe = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "response_length": args.response_length,
        "learning_rate": args.learning_rate,
        "kl_coef": args.kl_coef,
        "missing_eos_penalty": args.truncation_penalty,
    }
    jobs = [
        {"label": a.label, "weights": a.weights, "alpha": a.alpha, "seed": seed, "probe": probe}
        for seed in range(args.seeds)
        for a in ACTORS
    ] + [
        {"label": a.label, "weights": a.weights, "alpha": a.alpha, "seed": None, "probe": probe}
        for a in ACTORS
    ]
    print(f"world {world.root}; {len(jobs)} jobs on {args.workers} workers", flush=True)
    _set_limit(args.limit)
    before: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {a.label: [] for a in ACTORS}
    with ProcessPoolExecutor(
        max_workers=args.workers,
        initializer=_init_with_limit,
        initargs=(str(world.root), 1, args.limit),
    ) as pool:
        for result in pool.map(_run_job, jobs):
            where = "before RL" if result["seed"] is None else f"seed {result['seed']}"
            print(
                f"{result['label']:>16} {where:>9}: "
                + " ".join(f"{k} {v:.3f}" for k, v in result["scores"].items())
                + f" length {result['greedy_length']:.1f} ({result['seconds']:.0f} s)",
                flush=True,
            )
            if result["seed"] is None:
                before[result["label"]] = result
            else:
                runs[result["label"]].append(result)
    wall = time.perf_counter() - started
    _write_doc(args.out, args, world, probe, before, runs, wall, (loads_start, os.getloadavg()))
    for title, held, evidence in _verdicts(runs):
        print(f"{title}: {'reproduced' if held else 'not reproduced'} ({evidence})")
    print(f"wrote {args.out} in {wall / 60:.1f} min")


def _init_with_limit(world_root: str, threads: int, limit: int) -> None:
    _set_limit(limit)
    _worker_init(world_root, threads)


if __name__ == "__main__":
    main()
