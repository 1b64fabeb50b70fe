"""Do two sweeps with different sampler and probe seeds recommend the same ratio?

Runs the demo sweep (``service.cli._demo_sweep.demo_sweep_spec``: whatever ``bai-sweep demo``
runs, successive halving included when its spec enables it) twice with ``bai-sweep run``, the
real runner (Ray Tune trials, Optuna, lm-eval) on its own SQLite database in a temporary
directory: sweep *k* gets ``search.seed`` = k and ``probe.seed`` = k x ``probe.repeats`` (so the
two sweeps' probes share no seed). It prints both recommended (w, alpha) and whether they agree
within 0.1 in alpha and 0.15 in w (the largest difference over the weights). Under each sweep
it lists the candidates of the rung the recommendation is made on, with each seed's outcome
(``.`` kept its length, ``C`` collapsed, ``D`` diverged) and length retention, and what the
rule before session 8 (drop a trial when any seed collapsed) would have recommended.

More than two ``--seeds`` run one pair per two seeds (``--seeds 2 3 4 5``: sweeps 2 and 3, then
4 and 5) and end with how many pairs agreed: one pair is one sample of a yes/no outcome.

A pair that disagrees is told why:

- *search*: a sweep's recommended ratio was never probed by the other sweep (no candidate of
  the other within the tolerances), so the other could not have chosen it; only a larger or
  better-aimed search (more candidates) closes this gap;
- *measurement*: both sweeps probed both ratios (or ratios within the tolerances) and ranked them
  differently: their probe seeds, rung-0 promotion or gate decided, which repeats and intervals
  address;
- *undecidable*: a sweep made no recommendation (no ratio passed the stability gate).

``--keep DIR`` keeps each sweep's database and report; ``--from DIR`` reads the reports a
``--keep`` run left there (``DIR/sweep-<seed>/report/report.json``) and prints the same
analysis without running a sweep.

    nice -n 10 .venv/bin/python benchmarks/sweep_repeatability.py          # ~2 demo sweeps
    nice -n 10 .venv/bin/python benchmarks/sweep_repeatability.py --seeds 2 3 4 5 6 7
    .venv/bin/python benchmarks/sweep_repeatability.py --seeds 2 3 4 5 6 7 --from DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ALPHA_TOLERANCE = 0.1
WEIGHT_TOLERANCE = 0.15


def _run_sweep(spec: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Run ``spec`` with ``bai-sweep run`` in ``directory``; its ``report.json``."""
    directory.mkdir(parents=True)
    spec_file = directory / "sweep.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = directory / "report"
    command = [
        str(Path(sys.executable).with_name("bai-sweep")),
        "run",
        str(spec_file),
        "--db",
        f"sqlite:///{directory / 'sweeps.sqlite'}",
        "--report-dir",
        str(report),
        "--compare-to",
        "none",
    ]
    env = {**os.environ, "BAI_SWEEP_DATA_DIR": str(directory / "data")}
    done = subprocess.run(command, env=env, cwd=directory, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sweep {spec['name']} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    body: dict[str, Any] = json.loads((report / "report.json").read_text())
    return body


def _top_rung(report: dict[str, Any]) -> list[str]:
    """One line per complete trial of the highest rung reached, with its seeds' outcomes."""
    complete = [t for t in report["trials"] if t["state"] == "complete"]
    top = max(((t.get("fidelity") or {}).get("rung", 0) for t in complete), default=0)
    lines = []
    for t in complete:
        if (t.get("fidelity") or {}).get("rung", 0) != top:
            continue
        seeds = (t.get("stability") or {}).get("seeds") or []
        outcomes = "".join(
            "D" if s.get("diverged") else "C" if s.get("collapsed") else "." for s in seeds
        )
        weights = ", ".join(f"{w:.2f}" for w in t["weights"])
        values = ", ".join(f"{k} {v:.3f}" for k, v in (t["objectives"] or {}).items())
        retentions = " ".join(f"{s.get('length_retention', math.nan):.2f}" for s in seeds)
        lines.append(
            f"    #{t['number']} w=({weights}) a={t['alpha']:.2f} "
            f"{t['seed_kind'] or 'sampled'}: {values}; seeds [{outcomes}] "
            f"length retention [{retentions}]"
            f"{' front' if t.get('on_front') else ''}"
        )
    return lines


def _describe(recommendation: dict[str, Any] | None) -> str:
    if recommendation is None:
        return "no recommendation"
    weights = ", ".join(f"{w:.3f}" for w in recommendation["weights"])
    stats = ", ".join(
        f"{name} {value['mean']:.3f}" for name, value in recommendation["objectives"].items()
    )
    number = recommendation["trial_number"]
    return f"w=({weights}) alpha={recommendation['alpha']:.3f} (trial {number}: {stats})"


def _any_seed_gate(report: dict[str, Any]) -> dict[str, Any] | None:
    """The trial the rule before session 8 recommended: the same pool (front and tied set) and
    ranking as :data:`sweeps.reports.RECOMMENDATION_RULE`, but a trial is dropped when any one
    seed collapsed or diverged. For comparison on the same sweeps; None when none is left."""
    recommendation = report["recommendation"]
    key = recommendation["ranked_by"] if recommendation else "benchmark"
    pool_numbers = {t["number"] for t in report["front"]} | set(report["tied"])
    pool = [
        t
        for t in report["trials"]
        if t["number"] in pool_numbers
        and not (t["stability"] or {}).get("collapsed")
        and not (t["stability"] or {}).get("diverged")
    ]
    pool.sort(
        key=lambda t: (
            -t["objectives"][key],
            -t["objectives"].get("stability", 0.0),
            t["number"],
        )
    )
    if not pool:
        return None
    return {"trial_number": pool[0]["number"], **{k: pool[0][k] for k in ("weights", "alpha")}}


def _distances(first: dict[str, Any], second: dict[str, Any]) -> tuple[float, float]:
    """Two ratios' ``|d alpha|`` and largest ``|d w|`` over the weights."""
    d_alpha = abs(first["alpha"] - second["alpha"])
    d_w = max(abs(a - b) for a, b in zip(first["weights"], second["weights"], strict=True))
    return d_alpha, d_w


def _close(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two ratios lie within the tolerances of each other."""
    d_alpha, d_w = _distances(first, second)
    return d_alpha <= ALPHA_TOLERANCE and d_w <= WEIGHT_TOLERANCE


def _highest_rung(report: dict[str, Any], ratio: dict[str, Any]) -> int | None:
    """The highest rung at which ``report``'s sweep completed a probe of ``ratio`` or of a ratio
    within the tolerances of it (None: never)."""
    rungs = [
        (t.get("fidelity") or {}).get("rung", 0)
        for t in report["trials"]
        if t["state"] == "complete" and _close(t, ratio)
    ]
    return max(rungs, default=None)


def _cause(reports: list[dict[str, Any]]) -> tuple[str, str]:
    """Why two sweeps' recommendations differ (search, measurement or undecidable), and what
    each sweep probed of the other's pick."""
    picks = [r["recommendation"] for r in reports]
    if picks[0] is None or picks[1] is None:
        return "undecidable", "a sweep made no recommendation"
    notes = []
    search = False
    for label, pick, other, other_label in (
        ("a", picks[0], reports[1], "b"),
        ("b", picks[1], reports[0], "a"),
    ):
        rung = _highest_rung(other, pick)
        if rung is None:
            search = True
            notes.append(f"{label}'s pick never probed by {other_label}")
        else:
            notes.append(f"{label}'s pick probed by {other_label} up to rung {rung}")
    return "search" if search else "measurement", "; ".join(notes)


def _agreement(first: dict[str, Any] | None, second: dict[str, Any] | None) -> bool | None:
    """Whether two recommendations agree within the tolerances (None: one is missing)."""
    if first is None or second is None:
        print("agreement: undecidable (a sweep made no recommendation)")
        return None
    d_alpha, d_w = _distances(first, second)
    agree = _close(first, second)
    print(
        f"agreement: |d alpha| {d_alpha:.3f} (target <= {ALPHA_TOLERANCE}), max |d w| "
        f"{d_w:.3f} (target <= {WEIGHT_TOLERANCE}): {'agree' if agree else 'DISAGREE'}",
        flush=True,
    )
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1],
        metavar="SEED",
        help="sampler seeds, two per pair of sweeps (default: 0 1)",
    )
    parser.add_argument(
        "--keep", type=Path, help="keep each sweep's database and report under this directory"
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="analyse the reports a --keep run left in this directory instead of running",
    )
    args = parser.parse_args()
    if len(args.seeds) % 2:
        parser.error("--seeds takes two seeds per pair")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must all differ (the sweeps' probes share no seed)")
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep} exists")
    if args.source is not None:
        missing = [
            s
            for s in args.seeds
            if not (args.source / f"sweep-{s}/report/report.json").is_file()
            or not (args.source / f"sweep-{s}/sweep.yaml").is_file()
        ]
        if missing:
            parser.error(f"--from {args.source}: no report of the sweeps of seeds {missing}")

    from service.cli._demo_sweep import demo_sweep_spec
    from sweeps.demo import build_world

    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    if args.source is not None:
        base = yaml.safe_load((args.source / f"sweep-{args.seeds[0]}/sweep.yaml").read_text())
        print(f"reports kept in {args.source}")
    else:
        world = build_world(args.world, seed=0, progress=False)
        base = demo_sweep_spec(world).to_json_dict()
        print(f"world {world.recipe_hash}")
    repeats = base["probe"]["repeats"]
    print(
        f"demo sweep: {base['search']['n_trials']} trials, probe "
        f"{base['probe']['steps']} updates x {repeats} seed(s), fidelity "
        f"{'on' if (base.get('fidelity') or {}).get('enabled') else 'off'}",
        flush=True,
    )
    outcomes: list[bool | None] = []
    old_outcomes: list[bool | None] = []
    causes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bai-repeatability-") as tmp:
        root = args.keep or Path(tmp)
        for pair in range(len(args.seeds) // 2):
            picks: list[dict[str, Any] | None] = []
            old_picks: list[dict[str, Any] | None] = []
            reports: list[dict[str, Any]] = []
            for label, seed in zip("ab", args.seeds[2 * pair : 2 * pair + 2], strict=True):
                spec = {
                    **base,
                    "name": f"repeatability-{seed}",
                    "search": {**base["search"], "seed": seed},
                    "probe": {**base["probe"], "seed": seed * repeats},
                }
                mark = time.perf_counter()
                if args.source is not None:
                    report = json.loads(
                        (args.source / f"sweep-{seed}/report/report.json").read_text()
                    )
                else:
                    report = _run_sweep(spec, root / f"sweep-{seed}")
                reports.append(report)
                picks.append(report["recommendation"])
                old_picks.append(_any_seed_gate(report))
                print(
                    f"sweep {label} (sampler seed {seed}, probe seeds from {seed * repeats}): "
                    f"{_describe(report['recommendation'])}; "
                    f"{(time.perf_counter() - mark) / 60:.1f} min",
                    flush=True,
                )
                print("\n".join(_top_rung(report)), flush=True)
            outcomes.append(_agreement(*picks))
            if outcomes[-1] is not True:
                cause, detail = _cause(reports)
                causes.append(cause)
                print(f"  why: {cause} ({detail})", flush=True)
            print("  under the any-seed gate (the rule before session 8): ", end="")
            old_outcomes.append(_agreement(*old_picks))
    if len(outcomes) > 1:
        agreed = sum(1 for o in outcomes if o)
        before = sum(1 for o in old_outcomes if o)
        print(
            f"pairs agreeing: {agreed} of {len(outcomes)} "
            f"(under the any-seed gate: {before} of {len(old_outcomes)})"
        )
        if causes:
            print(
                "pairs disagreeing or undecidable, by cause: "
                + ", ".join(f"{c} {causes.count(c)}" for c in sorted(set(causes)))
            )
    print(
        f"wall {(time.perf_counter() - started) / 60:.1f} min; load average at start "
        f"{load_start:.1f}, at end {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
