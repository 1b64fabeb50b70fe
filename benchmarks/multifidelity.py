"""Benchmark: successive halving against a full-fidelity sweep of the same candidates.

Target (issue 12): successive halving reaches >= 95% of the full-fidelity sweep's final
hypervolume, judged at full fidelity, with <= 50% of its probe updates, same trial count
(candidates). In one run, on the demo world (built or reused) with the demo sweep's probe,
benchmarks and fidelity settings (``service/cli/_demo_sweep.py``):

1. the *full* sweep: :func:`sweeps.runner.run_sweep` probing every one of N candidates at
   the full probe (``probe.steps`` updates on ``probe.repeats`` seeds);
2. the *halving* sweep: the same spec and the same N candidates with ``fidelity`` on (the
   demo's rungs and eta), through the same runner.

Both sweeps get the same N candidates, enqueued as explicit seed points (the no-BAI
baselines, the paper's alpha 0.2 and 0.5, then a fixed spread of (w, alpha)), so the only
difference is the fidelity schedule. The halving sweep's final front (its top rung) is judged
at full fidelity: the hypervolume of its members' full-probe scores as the full sweep measured
them (same candidates, same probe seeds), against the full sweep's final hypervolume, both on
feasible trials and the spec's fixed reference point. Probe updates are counted with
:func:`sweeps.fidelity.probe_updates` (the schedule) and from the stored trials (what ran).

Usage::

    nice -n 10 .venv/bin/python benchmarks/multifidelity.py [--candidates 8] [--steps 8]
        [--repeats 3] [--eta 4] [--min-steps 2] [--seeds 0 1 2]

With several ``--seeds`` (the probe's seed, so each comparison trains other runs) it prints each
comparison, then the hypervolume ratio's mean and spread over them: one candidate set on one
probe seed is a single draw, and whether rung 0 keeps the full front's members varies
from draw to draw. Each comparison also prints its ceiling: the best hypervolume any subset of
the full sweep's candidates reaches at the size the top rung holds (2 of 8 at eta 4), i.e. the
most any promotion rule could keep; when the full front has more members than that, the ratio
cannot reach 1, and the ceiling says how far below it the target sits.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HV_TARGET = 0.95
UPDATES_TARGET = 0.50

#: Candidates beyond the seed presets: a fixed spread of (w_1, alpha).
SPREAD = [(0.3, 0.35), (0.7, 0.35), (0.5, 0.65), (0.2, 0.8), (0.8, 0.1), (0.4, 0.9)]


def _spec(
    world: Any, *, name: str, candidates: int, args: argparse.Namespace, halving: bool, seed: int
) -> Any:
    from service.cli._demo_sweep import demo_sweep_spec
    from sweeps.spec import SweepSpec

    if candidates > len(SPREAD) + 4 or candidates < 4:
        raise SystemExit(f"--candidates: 4 to {len(SPREAD) + 4}")
    points: list[Any] = ["baselines", {"alpha": 0.2}, {"alpha": 0.5}]
    points += [{"weights": [w, 1 - w], "alpha": a} for w, a in SPREAD]
    raw = demo_sweep_spec(world).to_json_dict()
    raw["name"] = name
    raw["search"].update(
        n_trials=candidates,
        sampler="random",
        seed_points=points[: candidates - 1],  # "baselines" is two candidates
    )
    raw["probe"].update(steps=args.steps, repeats=args.repeats, seed=seed)
    raw["fidelity"]["enabled"] = halving
    if args.eta is not None:
        raw["fidelity"]["eta"] = args.eta
    if args.min_steps is not None:
        raw["fidelity"]["min_steps"] = args.min_steps
    return SweepSpec.parse(raw, source=name)


def _number(text: str) -> int | float:
    """A command-line number: an int when whole (``4``, not ``4.0``, in the spec)."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _run(spec: Any, work: Path) -> tuple[Any, float]:
    from storage import SweepLease, create_sweep, init_database, session_scope
    from sweeps.results import load_report_data
    from sweeps.runner import run_sweep

    url = f"sqlite:///{work / (spec.name + '.sqlite')}"
    engine = init_database(url)
    with session_scope(engine) as session:
        sweep = create_sweep(
            session, name=spec.name, spec=spec.to_json_dict(), n_trials=spec.trial_budget()
        )
    lease = SweepLease.claim(engine, sweep_id=sweep.id, worker_id="bench")
    assert lease is not None
    started = time.perf_counter()
    with lease:
        outcome = run_sweep(lease=lease, data_dir=work / spec.name)
        lease.settle(outcome.status, outcome.error)
    wall = time.perf_counter() - started
    if outcome.status != "succeeded":
        raise SystemExit(f"sweep {spec.name} did not succeed: {outcome}")
    with session_scope(engine, read_only=True) as session:
        data = load_report_data(session, sweep_id=sweep.id, with_steps=False)
    return data, wall


def _key(trial: Any) -> tuple[float, ...]:
    return (*(round(w, 6) for w in trial.weights), round(trial.alpha, 6))


def _updates(data: Any, spec: Any) -> int:
    """PPO updates the stored trials ran: steps x seeds of every finished probe (its rung's
    with successive halving, else the spec's full probe)."""
    total = 0
    for trial in data.trials:
        if trial.state not in ("complete", "failed", "pruned"):
            continue
        probe = trial.fidelity or {"steps": spec.probe.steps, "repeats": spec.probe.repeats}
        total += int(probe["steps"]) * int(probe["repeats"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="full probe updates")
    parser.add_argument(
        "--repeats", type=int, default=3, help="full probe seeds (the demo's top rung: 3)"
    )
    parser.add_argument(
        "--eta", type=_number, default=None, help="promotion rate (default: the demo's)"
    )
    parser.add_argument(
        "--min-steps", type=int, default=None, help="rung-0 probe updates (default: the demo's)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="probe seeds: one comparison each, then the ratio's mean and spread over them",
    )
    args = parser.parse_args()
    from sweeps.demo import build_world

    world = build_world(REPO / ".bai-sweep" / "demo-world", seed=0, progress=False)
    work = Path(tempfile.mkdtemp(prefix="bai-sweep-multifidelity-"))
    hv_ratios, oracle_ratios, wall_ratios = [], [], []
    for seed in args.seeds:
        hv_ratio, oracle_ratio, wall_ratio = _compare(world, work, args, seed)
        hv_ratios.append(hv_ratio)
        oracle_ratios.append(oracle_ratio)
        wall_ratios.append(wall_ratio)
    if len(args.seeds) > 1:
        mean, spread = statistics.fmean(hv_ratios), statistics.stdev(hv_ratios)
        met = sum(r >= HV_TARGET for r in hv_ratios)
        print(
            f"over probe seeds {args.seeds}: hypervolume ratio mean {mean:.3f} ± {spread:.3f} "
            f"(sd; min {min(hv_ratios):.3f}, max {max(hv_ratios):.3f}), >= {HV_TARGET} on "
            f"{met} of {len(hv_ratios)}; mean {'PASS' if mean >= HV_TARGET else 'FAIL'}; "
            f"ceiling mean {statistics.fmean(oracle_ratios):.3f} (min {min(oracle_ratios):.3f}); "
            f"wall-time ratio mean {statistics.fmean(wall_ratios):.3f}"
        )


def _compare(
    world: Any, work: Path, args: argparse.Namespace, seed: int
) -> tuple[float, float, float]:
    """One full and one halving sweep over the same candidates on probe seed ``seed``."""
    from sweeps.fidelity import probe_updates, promotion_count
    from sweeps.pareto import hypervolume

    def spec(name: str, halving: bool) -> Any:
        return _spec(
            world, name=name, candidates=args.candidates, args=args, halving=halving, seed=seed
        )

    full_spec, sh_spec = spec(f"mf-full-{seed}", False), spec(f"mf-halving-{seed}", True)
    full, full_wall = _run(full_spec, work)
    halving, sh_wall = _run(sh_spec, work)

    full_scores = {_key(t): (t, v) for t, v in full.scored_trials()}
    judged = []
    for member in halving.front():
        trial, values = full_scores[_key(member)]
        if trial.feasible():
            judged.append(values)
    full_hv = full.hypervolume()
    sh_hv = hypervolume(judged, full.reference_point, full.directions)
    # The most any promotion rule could keep: the best subset of the full sweep's feasible
    # candidates of the size the top rung holds (its hypervolume at full fidelity).
    top = args.candidates
    for rung in sh_spec.rungs()[:-1]:
        top = promotion_count(top, rung.eta)
    feasible = [values for trial, values in full.scored_trials() if trial.feasible()]
    oracle_hv = max(
        (
            hypervolume(list(subset), full.reference_point, full.directions)
            for subset in itertools.combinations(feasible, min(top, len(feasible)))
        ),
        default=0.0,
    )
    planned_sh = probe_updates(sh_spec.rungs(), args.candidates)
    planned_full = probe_updates(full_spec.rungs(), args.candidates)
    ran_sh, ran_full = _updates(halving, sh_spec), _updates(full, full_spec)
    rungs = ", ".join(f"{r.steps}x{r.repeats}" for r in sh_spec.rungs())
    print(
        f"multifidelity: {args.candidates} candidates, rungs (steps x seeds) {rungs}, "
        f"eta {sh_spec.fidelity.eta}; full probe {args.steps}x{args.repeats}; probe seed {seed}"
    )
    print(
        f"  full sweep: {len(full.trials)} trials, front {[t.label() for t in full.front()]}, "
        f"hypervolume {full_hv:.4f}, {ran_full} probe updates, wall {full_wall:.0f} s"
    )
    print(
        f"  halving sweep: {len(halving.trials)} trials, front "
        f"{[t.label() for t in halving.front()]}, hypervolume at its top rung "
        f"{halving.hypervolume():.4f}, at full fidelity {sh_hv:.4f}, {ran_sh} probe updates, "
        f"wall {sh_wall:.0f} s"
    )
    hv_ratio = sh_hv / full_hv if full_hv > 0 else float("nan")
    oracle_ratio = oracle_hv / full_hv if full_hv > 0 else float("nan")
    print(
        f"  ceiling: the best {top} of the {len(feasible)} feasible candidates (what any "
        f"promotion rule could keep at a top rung of {top}): hypervolume {oracle_hv:.4f}, "
        f"ratio {oracle_ratio:.3f}"
    )
    print(
        f"  hypervolume ratio (halving front judged at full fidelity / full): {hv_ratio:.3f} "
        f"(target >= {HV_TARGET}) {'PASS' if hv_ratio >= HV_TARGET else 'FAIL'}"
    )
    ratio = planned_sh / planned_full
    print(
        f"  probe-update ratio (fidelity.probe_updates): {planned_sh}/{planned_full} = "
        f"{ratio:.3f} (ran: {ran_sh}/{ran_full} = {ran_sh / ran_full:.3f}) "
        f"(target <= {UPDATES_TARGET}) {'PASS' if ratio <= UPDATES_TARGET else 'FAIL'}",
        flush=True,
    )
    print(f"  wall-time ratio (halving / full): {sh_wall / full_wall:.3f}", flush=True)
    return hv_ratio, oracle_ratio, sh_wall / full_wall


if __name__ == "__main__":
    main()
