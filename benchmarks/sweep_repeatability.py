"""Do two sweeps with different sampler and probe seeds recommend the same ratio?

Runs the demo sweep (``service.cli._demo_sweep.demo_sweep_spec``: whatever ``bai-sweep demo``
runs, successive halving included when its spec enables it) twice with ``bai-sweep run``, the
real runner (Ray Tune trials, Optuna, lm-eval) on its own SQLite database in a temporary
directory: sweep *k* gets ``search.seed`` = k and ``probe.seed`` = k x ``probe.repeats`` (so the
two sweeps' probes share no seed). It prints both recommended (w, alpha) and whether they agree
within 0.1 in alpha and 0.15 in w (the largest difference over the weights).

    nice -n 10 .venv/bin/python benchmarks/sweep_repeatability.py          # ~2 demo sweeps
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
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ALPHA_TOLERANCE = 0.1
WEIGHT_TOLERANCE = 0.15


def _run_sweep(spec: dict[str, Any], directory: Path) -> dict[str, Any] | None:
    """Run ``spec`` with ``bai-sweep run`` in ``directory``; its report's recommendation."""
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
    recommendation: dict[str, Any] | None = json.loads((report / "report.json").read_text())[
        "recommendation"
    ]
    return recommendation


def _describe(recommendation: dict[str, Any] | None) -> str:
    if recommendation is None:
        return "no recommendation"
    weights = ", ".join(f"{w:.3f}" for w in recommendation["weights"])
    stats = ", ".join(
        f"{name} {value['mean']:.3f}" for name, value in recommendation["objectives"].items()
    )
    number = recommendation["trial_number"]
    return f"w=({weights}) alpha={recommendation['alpha']:.3f} (trial {number}: {stats})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--seeds", type=int, nargs=2, default=[0, 1], metavar=("A", "B"))
    args = parser.parse_args()
    if args.seeds[0] == args.seeds[1]:
        parser.error("--seeds must differ")

    from service.cli._demo_sweep import demo_sweep_spec
    from sweeps.demo import build_world

    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    world = build_world(args.world, seed=0, progress=False)
    base = demo_sweep_spec(world).to_json_dict()
    repeats = base["probe"]["repeats"]
    print(
        f"world {world.recipe_hash}; demo sweep: {base['search']['n_trials']} trials, probe "
        f"{base['probe']['steps']} updates x {repeats} seed(s), fidelity "
        f"{'on' if (base.get('fidelity') or {}).get('enabled') else 'off'}",
        flush=True,
    )
    picks = []
    with tempfile.TemporaryDirectory(prefix="bai-repeatability-") as tmp:
        for label, seed in zip("ab", args.seeds, strict=True):
            spec = {
                **base,
                "name": f"repeatability-{label}",
                "search": {**base["search"], "seed": seed},
                "probe": {**base["probe"], "seed": seed * repeats},
            }
            mark = time.perf_counter()
            recommendation = _run_sweep(spec, Path(tmp) / label)
            picks.append(recommendation)
            print(
                f"sweep {label} (sampler seed {seed}, probe seeds from {seed * repeats}): "
                f"{_describe(recommendation)}; {(time.perf_counter() - mark) / 60:.1f} min",
                flush=True,
            )
    first, second = picks
    if first is None or second is None:
        print("agreement: undecidable (a sweep made no recommendation)")
    else:
        d_alpha = abs(first["alpha"] - second["alpha"])
        d_w = max(abs(a - b) for a, b in zip(first["weights"], second["weights"], strict=True))
        agree = d_alpha <= ALPHA_TOLERANCE and d_w <= WEIGHT_TOLERANCE
        print(
            f"agreement: |d alpha| {d_alpha:.3f} (target <= {ALPHA_TOLERANCE}), max |d w| "
            f"{d_w:.3f} (target <= {WEIGHT_TOLERANCE}): {'agree' if agree else 'DISAGREE'}"
        )
    print(
        f"wall {(time.perf_counter() - started) / 60:.1f} min; load average at start "
        f"{load_start:.1f}, at end {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
