"""Benchmark of the sweep runner's orchestration overhead (issue 7 target: <= 1.0 s per trial).

In one run, on the demo world (built or reused) with short probes:

1. a *plain loop*: in a fresh process, load the trial inputs once and call
   :func:`sweeps.trial.run_trial` for N candidates, one after the other;
2. the *sweep*: :func:`sweeps.runner.run_sweep` on a SQLite database with the same spec and
   the same N candidates (enqueued explicitly, one trial at a time: ``max_concurrent_trials``
   1), so the work per trial is identical. Ray is started before the clock starts (its start
   is reported separately).

Both are timed for N = N_small and N = N_large; the plain loop runs with one torch thread,
as a Ray trial with ``cpus_per_trial: 1`` does. Reported:

- the orchestration time, i.e. the sweep's wall time minus the time the trial function
  measured inside itself (input loading included): everything Ray Tune, Optuna and storage
  add (scheduling, the Ray actor's start-up, Optuna ask/tell on the RDB storage, per-step and
  per-trial database writes, the Pareto front after every trial, the curve PNG artifact).
  Its growth from N_small to N_large divided by (N_large - N_small) is the *marginal
  overhead per trial* (the target); the rest is a fixed cost per sweep;
- the sweep against the plain loop: the ratio of wall times and the difference per trial.

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
load_started = time.perf_counter()
inputs = load_trial_inputs(spec)
inside = time.perf_counter() - load_started
for point in spec.seed_points():
    inside += run_trial(spec, point.candidate, inputs=inputs).timings["total_s"]
print(json.dumps({"wall_s": time.perf_counter() - started, "inside_s": inside}))
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
                "reward_rule": world.reward_rule,
                "prompts": str(world.prompts),
            },
            "search": {
                "n_trials": n_trials,
                "sampler": "random",
                "seed_points": [{"alpha": a, "weights": [0.5, 0.5]} for a in alphas],
            },
            "probe": {"steps": steps, "batch_size": 4, "response_length": 24},
            "benchmarks": {"selection": ["bai_facts_mc"], "report": [], "limit": 8},
            "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1},
        }
    ).to_json_dict()


def _plain(spec_json: dict) -> dict:
    # One torch thread, as in a Ray trial with cpus_per_trial=1 (Ray sets OMP_NUM_THREADS).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_LOOP, json.dumps(spec_json)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sweep(spec_json: dict, work: Path) -> dict:
    import optuna

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
        study_name = sweep.study_name
    started = time.perf_counter()
    outcome = run_sweep(database_url=url, sweep_id=sweep.id, data_dir=work, worker_id="bench")
    wall = time.perf_counter() - started
    if outcome.status != "succeeded" or outcome.complete != spec_json["search"]["n_trials"]:
        raise SystemExit(f"sweep did not succeed: {outcome}")
    # What the trial function measured inside itself (its total includes a first input load).
    study = optuna.load_study(study_name=study_name, storage=url)
    inside = sum(t.user_attrs["timings/total_s"] for t in study.trials)
    return {"wall_s": wall, "inside_s": inside}


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
            sweep = _sweep(spec_json, Path(tmp))
            results[n] = {"plain": plain, "sweep": sweep}
            print(
                f"N={n}: plain loop {plain['wall_s']:.1f} s (trials {plain['inside_s']:.1f} s), "
                f"sweep {sweep['wall_s']:.1f} s (trials {sweep['inside_s']:.1f} s)",
                flush=True,
            )
    ray.shutdown()
    small, large = results[args.small], results[args.large]

    def outside(run: dict) -> float:  # sweep time not spent inside the trial function
        return run["sweep"]["wall_s"] - run["sweep"]["inside_s"]

    marginal = (outside(large) - outside(small)) / (args.large - args.small)
    fixed = outside(small) - args.small * marginal
    amortised = outside(large) / args.large
    print(f"Ray start (not counted): {ray_start:.1f} s")
    print(
        f"sweep / plain loop at N={args.large}: "
        f"{large['sweep']['wall_s'] / large['plain']['wall_s']:.2f}x "
        f"({large['sweep']['wall_s']:.1f} s vs {large['plain']['wall_s']:.1f} s; "
        f"{(large['sweep']['wall_s'] - large['plain']['wall_s']) / args.large:+.2f} s per trial)"
    )
    print(
        f"orchestration time outside the trial function: fixed {fixed:.1f} s per sweep "
        f"(Tuner set-up, Ray actor start-up, study, teardown), amortised "
        f"{amortised:.2f} s per trial at N={args.large}"
    )
    verdict = "OK" if marginal <= 1.0 else "over target"
    print(
        f"marginal orchestration overhead per trial: {marginal:.2f} s (target <= 1.0 s: {verdict})"
    )


if __name__ == "__main__":
    main()
