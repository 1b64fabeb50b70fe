"""Benchmark of the sweep runner's orchestration overhead, on a local Ray and on a cluster.

Targets (issue 13): marginal orchestration overhead <= 0.5 s per trial and sweep / plain loop
<= 1.25x at N = 6, in both modes. In one run, on the demo world (built or reused) with short
probes:

1. a *plain loop*: in a fresh process, load the trial inputs once and call
   :func:`sweeps.trial.run_trial` for N candidates, one after the other;
2. the *sweep*: :func:`sweeps.runner.run_sweep` on a SQLite database with the same spec and
   the same N candidates (enqueued explicitly, one trial at a time: ``max_concurrent_trials``
   1), so the work per trial is identical. Ray is started before the clock starts (its start
   is reported separately): ``local`` mode starts a Ray instance in this process; ``cluster``
   mode starts a head and a second node (``ray start``, one CPU each, see
   ``tests/ray_cluster.py``) and joins it by its GCS address, as a worker does.

Both are timed for N = N_small and N = N_large, after an uncounted 1-trial warm-up of each
(cold imports, first Ray worker start); the plain loop runs with one torch thread, as a Ray
trial with ``cpus_per_trial: 1`` does. With ``--repeats R`` each (plain loop, sweep) pair runs
R times, interleaved, and each quantity below is the lowest of its R values: on a shared
machine other load only adds time. Reported:

- the orchestration time, i.e. the sweep's wall time minus the time the trial function
  measured inside itself (input loading included): everything Ray Tune, Optuna and storage
  add (scheduling, the Ray actor's start-up, Optuna ask/tell on the RDB storage, per-step and
  per-trial database writes, the Pareto front after every trial, the curve PNG artifact).
  Its growth from N_small to N_large divided by (N_large - N_small) is the *marginal
  overhead per trial* (the target); the rest is a fixed cost per sweep;
- the sweep against the plain loop: the ratio of wall times and the difference per trial.

Usage::

    .venv/bin/python benchmarks/sweep_overhead.py [--mode local|cluster|both] [--small 2]
        [--large 6] [--steps 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARGINAL_TARGET_S = 0.5
RATIO_TARGET = 1.25

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


def _sweep(spec_json: dict, work: Path, ray_address: str | None) -> dict:
    import optuna

    from storage import SweepLease, create_sweep, init_database, session_scope
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
    lease = SweepLease.claim(engine, sweep_id=sweep.id, worker_id="bench")
    assert lease is not None
    started = time.perf_counter()
    with lease:
        outcome = run_sweep(lease=lease, data_dir=work, ray_address=ray_address)
        lease.settle(outcome.status, outcome.error)
    wall = time.perf_counter() - started
    if outcome.status != "succeeded" or outcome.complete != spec_json["search"]["n_trials"]:
        raise SystemExit(f"sweep did not succeed: {outcome}")
    # What the trial function measured inside itself (its total includes a first input load).
    study = optuna.load_study(study_name=sweep.study_name, storage=url)
    inside = sum(t.user_attrs["timings/total_s"] for t in study.trials)
    return {"wall_s": wall, "inside_s": inside}


def _measure(mode: str, world, args: argparse.Namespace) -> None:
    import ray

    cluster = None
    started = time.perf_counter()
    if mode == "cluster":
        sys.path.insert(0, str(REPO))
        from tests.ray_cluster import NO_TOKEN_AUTH, LocalRayCluster

        os.environ.update(NO_TOKEN_AUTH)
        root = Path(tempfile.mkdtemp(prefix="bai-sweep-overhead-ray-"))
        cluster = LocalRayCluster(root, nodes=[{"num_cpus": 1}, {"num_cpus": 1}]).start()
        ray.init(address=cluster.address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    results: dict[int, list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bai-sweep-overhead-") as tmp:
            # Warm-up, not counted: the first plain loop and the first sweep of a process pay
            # cold imports and Ray worker start-up that later runs do not.
            warm = _spec(world, 1, args.steps)
            warm["name"] = f"warm-up-{mode}"
            _plain(warm)
            _sweep(warm, Path(tmp), cluster.address if cluster else None)
            for repeat in range(args.repeats):
                for n in (args.small, args.large):
                    spec_json = _spec(world, n, args.steps)
                    spec_json["name"] = f"{spec_json['name']}-{mode}-{repeat}"
                    plain = _plain(spec_json)
                    sweep = _sweep(spec_json, Path(tmp), cluster.address if cluster else None)
                    results.setdefault(n, []).append({"plain": plain, "sweep": sweep})
                    print(
                        f"[{mode}] N={n} (run {repeat + 1}/{args.repeats}): plain loop "
                        f"{plain['wall_s']:.1f} s (trials {plain['inside_s']:.1f} s), sweep "
                        f"{sweep['wall_s']:.1f} s (trials {sweep['inside_s']:.1f} s)",
                        flush=True,
                    )
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.stop()

    # On a shared machine other load only ever adds time: each quantity is the best (lowest)
    # of its repeats, taken separately (with one repeat, the single measurement).
    def best(n: int, quantity: Callable[[dict], float]) -> float:
        return min(quantity(run) for run in results[n])

    def outside(run: dict) -> float:  # sweep time not spent inside the trial function
        return run["sweep"]["wall_s"] - run["sweep"]["inside_s"]

    def sweep_wall(run: dict) -> float:
        return run["sweep"]["wall_s"]

    def plain_wall(run: dict) -> float:
        return run["plain"]["wall_s"]

    small_outside, large_outside = best(args.small, outside), best(args.large, outside)
    marginal = (large_outside - small_outside) / (args.large - args.small)
    fixed = small_outside - args.small * marginal
    amortised = large_outside / args.large
    sweep_s, plain_s = best(args.large, sweep_wall), best(args.large, plain_wall)
    ratio = sweep_s / plain_s
    what = "2-node cluster start" if cluster else "Ray start"
    print(f"[{mode}] {what} (not counted): {ray_start:.1f} s")
    print(
        f"[{mode}] sweep / plain loop at N={args.large}: {ratio:.2f}x "
        f"({sweep_s:.1f} s vs {plain_s:.1f} s; "
        f"{(sweep_s - plain_s) / args.large:+.2f} s per trial) "
        f"(target <= {RATIO_TARGET}x: {'OK' if ratio <= RATIO_TARGET else 'over target'})"
    )
    print(
        f"[{mode}] orchestration time outside the trial function: fixed {fixed:.1f} s per "
        f"sweep (Tuner set-up, Ray actor start-up, study, teardown), amortised "
        f"{amortised:.2f} s per trial at N={args.large}"
    )
    print(
        f"[{mode}] marginal orchestration overhead per trial: {marginal:.2f} s "
        f"(target <= {MARGINAL_TARGET_S} s: "
        f"{'OK' if marginal <= MARGINAL_TARGET_S else 'over target'})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("local", "cluster", "both"), default="both")
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--large", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2, help="PPO updates per probe")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each N, interleaved; the best counts"
    )
    parser.add_argument("--world-dir", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--world", type=Path, help="an already built world (its directory)")
    args = parser.parse_args()

    from sweeps.demo import build_world, load_world

    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if args.mode == "both":
        # One process per mode: joining the cluster after a local Ray was shut down in the
        # same process left Tune's trial actors cancelled before they started.
        argv = ["--small", str(args.small), "--large", str(args.large), "--steps", str(args.steps)]
        argv += ["--repeats", str(args.repeats)]
        argv += ["--world-dir", str(args.world_dir)] + (
            ["--world", str(args.world)] if args.world else []
        )
        for mode in ("local", "cluster"):
            subprocess.run([sys.executable, __file__, "--mode", mode, *argv], check=True)
    else:
        world = (
            load_world(args.world) if args.world else build_world(args.world_dir, progress=False)
        )
        _measure(args.mode, world, args)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
