"""Does the sweep's short probe rank candidates like much longer RL runs on other seeds?

The premise of a ratio sweep is that a short, cheap probe tells which (w, alpha) trains well.
This measures it on the demo world. Each candidate — the no-BAI baselines (each SFT model
alone) and the paper's grid (alpha in 0.1 ... 0.9 at equal weights, from the sweep's own search
space), then points sampled uniformly from it if ``--candidates`` asks for more — gets:

- the **sweep-fidelity score**: ``sweeps.trial.run_trial`` with the demo sweep's own spec
  (``service.cli._demo_sweep.demo_sweep_spec``: its probe steps, batch, length, learning rate
  and ``probe.repeats`` seeds, stability measured against the parents' reference length), the
  very code a sweep runs; its ``stability`` objective is the score;
- **long runs**: the same probe, ``--ratio`` (default 6) times as many PPO updates, without the
  early stop, on ``--long-seeds`` seeds none of the short probes used; their stability score
  (mean over the long seeds) is the outcome.

It prints Spearman's rho between the score and the outcome (target >= 0.8), and as the ceiling
the long runs' own seed-to-seed rho (how well one long run ranks like another), with what it
implies for a perfect score against the mean of the long seeds (Spearman-Brown). Then the
forecast objectives (``sweeps.forecast``), measured by the same trial with
``reward_asymptote`` and ``length_at_horizon`` added to its objectives and
``probe.forecast_horizon`` set to the long runs' updates: the reward asymptote and the length
predicted at the long runs' last update, each ranked against what the long runs reached (mean
reward and length over their last stability window) next to the raw short-probe value (the
same last-window mean of the short probes, averaged over their seeds: the ``observed`` value of
the trial's forecast records). A seed whose curve has no fit (the module refuses flat, noisy or
unbent curves) takes its observed value in the objective, exactly as in a sweep; the count of
seeds with a fit is printed.

    nice -n 10 .venv/bin/python benchmarks/probe_validity.py                  # ~30 min
    .venv/bin/python benchmarks/probe_validity.py --candidates 4 --long-seeds 2 --ratio 2
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from sweeps.search_space import Candidate
    from sweeps.spec import SweepSpec
    from sweeps.trial import TrialOutcome

TARGET_RHO = 0.8
_STATE: dict[str, Any] = {}


def _candidates(spec: SweepSpec, count: int) -> list[tuple[str, Candidate]]:
    """Baselines, then the paper's grid, then uniform samples of the space (seed 0)."""
    from sweeps.search_space import Candidate, weights_from_uniforms

    space = spec.search_space()
    names = ("instruct", "reasoning")
    out = [
        (f"sft-{names[i]}" if len(names) == space.n_sft else f"sft-{i}", point.candidate)
        for i, point in enumerate(space.baseline_points())
    ]
    out += [(f"paper a={p.candidate.alpha:g}", p.candidate) for p in space.paper_points()]
    rng = random.Random(0)
    low, high = space.alpha_bounds
    while len(out) < count:
        weights = weights_from_uniforms([rng.random() for _ in range(space.n_uniforms)])
        candidate = Candidate(weights, round(rng.uniform(low, high), 3))
        out.append((f"sampled {candidate.label()}", candidate))
    return out[:count]


def _with_repeats(spec: SweepSpec, repeats: int) -> SweepSpec:
    """``spec`` with ``probe.repeats`` seeds per candidate."""
    return spec.model_copy(update={"probe": spec.probe.model_copy(update={"repeats": repeats})})


def _worker_init(world_root: str, repeats: int) -> None:
    """Per worker: offline, single-threaded torch, the demo sweep's spec and trial inputs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import logging

    from evaluators._offline import force_offline

    force_offline()
    warnings.filterwarnings("ignore")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    import torch
    from transformers.utils import logging as hf_logging

    from service.cli._demo_sweep import demo_sweep_spec
    from sweeps.demo import load_world
    from sweeps.trial import load_trial_inputs

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec = _with_repeats(demo_sweep_spec(load_world(world_root)), repeats)
    _STATE["spec"] = spec
    _STATE["inputs"] = load_trial_inputs(spec)


def _window_mean(curve: list[float], window: int) -> float:
    finite = [v for v in curve if math.isfinite(v)]
    return statistics.fmean(finite[-window:]) if finite else math.nan


def _forecast_spec(spec: SweepSpec, horizon: int) -> SweepSpec:
    """The demo sweep's spec with the forecast objectives, forecasting at ``horizon`` updates
    (successive halving off: ``run_trial`` probes the full probe either way)."""
    from sweeps.spec import SweepSpec

    data = spec.to_json_dict()
    data["objectives"] = [*data["objectives"], "reward_asymptote", "length_at_horizon"]
    data["probe"]["forecast_horizon"] = horizon
    data["fidelity"]["enabled"] = False
    return SweepSpec.parse(data, source="probe_validity forecast spec")


def _seeds_mean(outcome: TrialOutcome, record: str, key: str) -> float:
    """The mean of a forecast record's ``key`` over the trial's seeds."""
    return statistics.fmean(float(seed[record][key]) for seed in outcome.stability["seeds"])


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    """A short job (the sweep's own trial) or a long run (one seed, ``steps`` updates)."""
    from probe_noise import probe_candidate

    from sweeps.search_space import Candidate
    from sweeps.trial import run_trial

    spec, inputs = _STATE["spec"], _STATE["inputs"]
    candidate = Candidate(tuple(job["weights"]), job["alpha"])
    window = spec.probe.stability_window
    started = time.perf_counter()
    out: dict[str, Any] = {"index": job["index"], "kind": job["kind"], "seed": job["seed"]}
    if job["kind"] == "short":
        outcome = run_trial(_forecast_spec(spec, job["horizon"]), candidate, inputs=inputs)
        out["score"] = outcome.objectives["stability"]
        out["first_seed_score"] = float(outcome.stability["seeds"][0]["stability"])
        for quantity, record, objective in (
            ("reward", "reward_forecast", "reward_asymptote"),
            ("length", "length_forecast", "length_at_horizon"),
        ):
            out[f"{quantity}_raw"] = _seeds_mean(outcome, record, "observed")
            out[f"{quantity}_forecast"] = outcome.objectives[objective]
            out[f"{quantity}_fitted"] = outcome.stability[record]["seeds_fitted"]
    else:
        config = spec.probe.model_copy(
            update={"steps": job["steps"], "seed": job["seed"], "early_stop": False}
        )
        result = probe_candidate(spec, inputs, candidate.weights, candidate.alpha, config)
        # A diverged run's score is 0 (None: its very first update diverged).
        out["score"] = 0.0 if result.stability is None else result.stability.stability
        out["reward_final"] = _window_mean(result.curve("reward_mean"), window)
        out["length_final"] = _window_mean(result.curve("length_mean"), window)
    out["seconds"] = time.perf_counter() - started
    return out


def _rho(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2 or any(math.isnan(v) for v in (*a, *b)):
        return math.nan
    return float(spearmanr(a, b).statistic)


def _fmt_rho(value: float) -> str:
    return "undefined (a constant ranking)" if math.isnan(value) else f"{value:+.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--candidates", type=int, default=7, help="at least 3 (default 7)")
    parser.add_argument("--long-seeds", type=int, default=2, help="at least 2 (default 2)")
    parser.add_argument("--ratio", type=int, default=6, help="long run / probe updates")
    parser.add_argument("--workers", type=int, default=2, help="at most 2 (shared machine)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="seeds of the sweep probe (default: the demo sweep's probe.repeats); with more "
        "than one, the rho of the first seed alone is printed too",
    )
    args = parser.parse_args()
    if args.candidates < 3 or args.long_seeds < 2 or args.ratio < 1:
        parser.error("--candidates must be >= 3, --long-seeds >= 2 and --ratio >= 1")
    if not 1 <= args.workers <= 2:
        parser.error("--workers must be 1 or 2")
    if args.repeats is not None and not 1 <= args.repeats <= 8:
        parser.error("--repeats must be between 1 and 8")
    warnings.filterwarnings("ignore")

    from service.cli._demo_sweep import demo_sweep_spec
    from sweeps.demo import build_world

    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    world = build_world(args.world, seed=0, progress=False)
    spec = demo_sweep_spec(world)
    if args.repeats is not None:
        spec = _with_repeats(spec, args.repeats)
    probe = spec.probe
    candidates = _candidates(spec, args.candidates)
    short_seeds = [probe.seed + r for r in range(probe.repeats)]
    long_seeds = [probe.seed + probe.repeats + k for k in range(args.long_seeds)]
    long_steps = args.ratio * probe.steps
    print(
        f"world {world.recipe_hash}; {len(candidates)} candidates; sweep probe "
        f"{probe.steps} updates x {probe.repeats} seed(s) {short_seeds} (batch "
        f"{probe.batch_size}, {probe.response_length} tokens, lr {probe.learning_rate}); long "
        f"runs {long_steps} updates ({args.ratio}x) on seeds {long_seeds}; {args.workers} "
        f"workers, torch threads 1",
        flush=True,
    )
    base = [
        {"index": i, "weights": list(c.weights), "alpha": c.alpha}
        for i, (_, c) in enumerate(candidates)
    ]
    # Long runs first: the short ones fill the gaps at the end.
    jobs = [
        {**b, "kind": "long", "seed": seed, "steps": long_steps}
        for seed in long_seeds
        for b in base
    ] + [{**b, "kind": "short", "seed": short_seeds[0], "horizon": long_steps} for b in base]
    short: dict[int, dict[str, Any]] = {}
    long: dict[int, dict[int, dict[str, Any]]] = {i: {} for i in range(len(candidates))}
    with ProcessPoolExecutor(
        max_workers=args.workers,
        initializer=_worker_init,
        initargs=(str(world.root), probe.repeats),
    ) as pool:
        for result in pool.map(_run_job, jobs):
            if result["kind"] == "short":
                short[result["index"]] = result
            else:
                long[result["index"]][result["seed"]] = result
            label = candidates[result["index"]][0]
            print(
                f"  done {result['kind']:5s} seed {result['seed']:>3} {label}: stability "
                f"{result['score']:.3f} ({result['seconds']:.0f} s)",
                flush=True,
            )
    wall = time.perf_counter() - started

    indices = range(len(candidates))
    scores = [short[i]["score"] for i in indices]
    per_seed = {s: [long[i][s]["score"] for i in indices] for s in long_seeds}
    outcome = [statistics.fmean(long[i][s]["score"] for s in long_seeds) for i in indices]
    print(
        f"\n{'candidate':34s} {'sweep score':>11s} {'long runs (per seed)':>26s} {'long mean':>9s}"
    )
    for i in indices:
        seeds = ", ".join(f"{long[i][s]['score']:.3f}" for s in long_seeds)
        print(f"{candidates[i][0]:34s} {scores[i]:11.3f} {seeds:>26s} {outcome[i]:9.3f}")
    rho = _rho(scores, outcome)
    singles = [_rho(scores, per_seed[s]) for s in long_seeds]
    ceilings = [_rho(per_seed[a], per_seed[b]) for a, b in itertools.combinations(long_seeds, 2)]
    ceiling = statistics.fmean(ceilings)
    if probe.repeats > 1:
        first = _rho([short[i]["first_seed_score"] for i in indices], outcome)
        print(
            f"Spearman rho of the first probe seed alone ({probe.steps} updates x 1 seed) vs "
            f"the long-run mean: {_fmt_rho(first)}"
        )
    verdict = "met" if rho >= TARGET_RHO else "MISSED"
    print(
        f"\nSpearman rho, sweep score ({probe.steps} updates) vs long-run stability "
        f"({long_steps} updates, mean of {len(long_seeds)} seeds): {_fmt_rho(rho)} "
        f"(target >= {TARGET_RHO}: {verdict}); vs single long seeds: "
        + ", ".join(_fmt_rho(r) for r in singles)
    )
    print(
        f"ceiling: long-run seed-to-seed rho {_fmt_rho(ceiling)}"
        + (f" (pairs: {', '.join(_fmt_rho(c) for c in ceilings)})" if len(ceilings) > 1 else "")
    )
    k = len(long_seeds)
    if ceiling > 0:
        # Spearman-Brown: the reliability of a mean of k long runs is k r / (1 + (k - 1) r),
        # and a score that knew each candidate's true long-run value would correlate with that
        # mean at the square root of it (classical test theory; approximate for ranks).
        attainable = math.sqrt(k * ceiling / (1 + (k - 1) * ceiling))
        print(
            f"attainable: a perfect score's expected rho with the mean of {k} long seeds "
            f"(Spearman-Brown from the seed-to-seed rho) {_fmt_rho(attainable)}"
        )
    for quantity, raw_key, forecast_key, final_key in (
        ("reward (asymptote)", "reward_raw", "reward_forecast", "reward_final"),
        (f"length (at update {long_steps})", "length_raw", "length_forecast", "length_final"),
    ):
        final = [statistics.fmean(long[i][s][final_key] for s in long_seeds) for i in indices]
        raw = [short[i][raw_key] for i in indices]
        forecast = [short[i][forecast_key] for i in indices]
        fitted_key = raw_key.replace("_raw", "_fitted")
        count = sum(short[i][fitted_key] for i in indices)
        rho_raw, rho_forecast = _rho(raw, final), _rho(forecast, final)
        better = (
            "n/a"
            if math.isnan(rho_raw) or math.isnan(rho_forecast)
            else ("yes" if rho_forecast > rho_raw else "no")
        )
        print(
            f"forecast {quantity}: fitted for {count}/{len(indices) * probe.repeats} probe "
            f"seeds (the others take their observed value); rho vs the long "
            f"runs' final {quantity.split()[0]}: forecast {_fmt_rho(rho_forecast)}, raw "
            f"short-probe {_fmt_rho(rho_raw)}; forecast ranks better: {better}"
        )
    print(
        f"wall {wall / 60:.1f} min; load average at start {load_start:.1f}, at end "
        f"{os.getloadavg()[0]:.1f}; {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
