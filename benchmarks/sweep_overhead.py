"""Benchmark of the sweep runner's orchestration overhead (issue 7 target: <= 1.0 s per trial).

In one run, on the demo world (built or reused) with short probes:

1. a *plain loop*: in a fresh process, load the trial inputs once and call
   :func:`sweeps.trial.run_trial` for N candidates, one after the other;
2. the *sweep*: :func:`sweeps.runner.run_sweep` on a SQLite database with the same spec and
   the same N candidates (enqueued explicitly, one trial at a time: ``max_concurrent_trials``
   1), so the work per trial is identical. Ray is started before the clock starts (its start
   is reported separately).

Both are timed for N = N_small and N = N_large. Reported:

- ``overhead per trial`` = (sweep - plain) / N at N_large: everything the orchestration adds
  (Tune scheduling, the Ray actor and its start-up, Optuna ask/tell on the RDB storage,
  per-step and per-trial database writes, the Pareto front after every trial, the curve PNG
  artifact, heartbeats), amortised;
- ``marginal overhead per trial`` = ((sweep_L - sweep_S) - (plain_L - plain_S)) / (L - S):
  the cost of one more trial once the sweep runs (the target);
- the ratio sweep / plain.

Usage::

    .venv/bin/python benchmarks/sweep_overhead.py [--small 2] [--large 6] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLAIN_LOOP = """
import json, sys, time
started = time.perf_counter()
from sweeps.search_space import Candidate
from sweeps.spec import SweepSpec
from sweeps.trial import load_trial_inputs, run_trial
spec = SweepSpec.model_validate(json.loads(sys.argv[1]))
inputs = load_trial_inputs(spec)
for point in spec.seed_points():
    run_trial(spec, point.candidate, inputs=inputs)
print(json.dumps({"wall_s": time.perf_counter() - started}))
"""


def _spec(world, n_trials: int, steps: int) -> dict:
    from sweeps.spec import SweepSpec

    alphas = [round(0.05 + 0.9 * k / max(n_trials - 1, 1), 4) for k in range(n_trials)]
    return SweepSpec.parse(
        {
            "name": f"overhead-{n_trials}",
            "models": {
                "base": str(world.base),
                "sft": [str(p) for p in world.sfts],
                "reward": str(world.reward),
                "prompts": str(world.prompts),
            },
            "search": {
                "n_trials": n_trials,
                "sampler": "random",
                "seed_points": [{"alpha": a, "weights": [0.5, 0.5]} for a in alphas],
            },
            "probe": {"steps": steps, "batch_size": 4, "response_length": 24},
            "benchmarks": {"selection": ["bai_arith_mc"], "report": [], "limit": 8},
            "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1},
        }
    ).to_json_dict()


def _plain(spec_json: dict) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_LOOP, json.dumps(spec_json)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["wall_s"]


def _sweep(spec_json: dict, work: Path) -> tuple[float, dict]:
    from storage import claim_sweep, create_sweep, init_database, session_scope
    from sweeps.runner import run_sweep

    url = f"sqlite:///{work / (spec_json['name'] + '.sqlite')}"
    engine = init_database(url)
    with session_scope(engine) as session:
        sweep = create_sweep(
            session,
            name=spec_json["name"],
            spec=spec_json,
            n_trials=spec_json["search"]["n_trials"],
        )
        claim_sweep(session, sweep_id=sweep.id, worker_id="bench")
    started = time.perf_counter()
    outcome = run_sweep(database_url=url, sweep_id=sweep.id, data_dir=work, worker_id="bench")
    wall = time.perf_counter() - started
    if outcome.status != "succeeded" or outcome.complete != spec_json["search"]["n_trials"]:
        raise SystemExit(f"sweep did not succeed: {outcome}")
    return wall, {"complete": outcome.complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--large", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2, help="PPO updates per probe")
    parser.add_argument("--world-dir", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--world", type=Path, help="an already built world (its directory)")
    args = parser.parse_args()

    import ray

    from sweeps.demo import build_world, load_world

    world = load_world(args.world) if args.world else build_world(args.world_dir, progress=False)
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    results = {}
    with tempfile.TemporaryDirectory(prefix="bai-sweep-overhead-") as tmp:
        for n in (args.small, args.large):
            spec_json = _spec(world, n, args.steps)
            plain = _plain(spec_json)
            sweep, _ = _sweep(spec_json, Path(tmp))
            results[n] = {"plain_s": plain, "sweep_s": sweep}
            print(f"N={n}: plain loop {plain:.1f} s, sweep {sweep:.1f} s", flush=True)
    ray.shutdown()
    small, large = results[args.small], results[args.large]
    per_trial = (large["sweep_s"] - large["plain_s"]) / args.large
    marginal = ((large["sweep_s"] - small["sweep_s"]) - (large["plain_s"] - small["plain_s"])) / (
        args.large - args.small
    )
    print(f"Ray start (not counted): {ray_start:.1f} s")
    print(
        f"sweep / plain at N={args.large}: {large['sweep_s'] / large['plain_s']:.2f}x "
        f"({large['sweep_s']:.1f} s vs {large['plain_s']:.1f} s)"
    )
    print(f"overhead per trial (amortised, N={args.large}): {per_trial:.2f} s")
    verdict = "OK" if marginal <= 1.0 else "over target"
    print(f"marginal overhead per trial: {marginal:.2f} s (target <= 1.0 s: {verdict})")


if __name__ == "__main__":
    main()
