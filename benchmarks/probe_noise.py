"""Seed-to-seed noise of the demo sweep's probe: how many seeds a candidate needs.

Probes a few demo-world candidates on several seeds with the demo sweep's own probe settings
(``service/cli/_demo_sweep.py``; stability against the parents' reference length) and prints,
per candidate, the per-seed stability scores, their standard deviation and the 95% interval
half-width that 1, 2 and 3 seeds would give (``sweeps.statistics.mean_interval``), plus the
pooled seed standard deviation next to the spread *between* candidates' means. This is the
measurement behind ``probe.repeats``' default. Each seed's reward forecast
(``sweeps.forecast.fit_reward_curve``: the fitted asymptote, or why there is none) is printed
beside it.

    .venv/bin/python benchmarks/probe_noise.py --seeds 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluators.probe import ProbeConfig, ProbeResult
    from sweeps.spec import SweepSpec
    from sweeps.trial import TrialInputs

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = {
    "sft-reasoning": ((0.0, 1.0), 0.0),
    "sft-instruct": ((1.0, 0.0), 0.0),
    "paper w=(.5,.5) a=.2": ((0.5, 0.5), 0.2),
    "reasoning-heavy w=(.2,.8) a=.1": ((0.2, 0.8), 0.1),
}


def probe_candidate(
    spec: SweepSpec,
    inputs: TrialInputs,
    weights: Sequence[float],
    alpha: float,
    config: ProbeConfig,
) -> ProbeResult:
    """One probe of the BAI actor at ``(weights, alpha)`` as a sweep of ``spec`` runs it (the
    spec's prompt format and reference length), with ``config``; a diverged probe's steps."""
    from evaluators.probe import ProbeDivergedError, run_probe

    actor = inputs.merge_inputs.build_actor(list(weights), alpha, normalize=True)
    try:
        return run_probe(
            actor,
            inputs.tokenizer,
            inputs.reward,
            inputs.prompts,
            config,
            prompt=spec.prompt,
            reference_length=inputs.reference_length,
        )
    except ProbeDivergedError as exc:
        return exc.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=REPO / ".bai-sweep" / "demo-world")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="default: the demo sweep's")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    from service.cli._demo_sweep import demo_sweep_spec
    from sweeps.demo import build_world
    from sweeps.forecast import fit_reward_curve
    from sweeps.statistics import mean_interval
    from sweeps.trial import load_trial_inputs

    torch.set_num_threads(1)
    spec = demo_sweep_spec(build_world(args.world, seed=0, progress=False))
    if args.steps is not None:
        spec = spec.model_copy(
            update={"probe": spec.probe.model_copy(update={"steps": args.steps})}
        )
    started = time.perf_counter()
    inputs = load_trial_inputs(spec)
    probe = spec.probe
    print(
        f"probe: {probe.steps} steps, batch {probe.batch_size}, {probe.response_length} tokens, "
        f"lr {probe.learning_rate}; reference length {inputs.reference_length:.2f}; "
        f"{args.seeds} seeds; torch threads 1"
    )
    means, variances = [], []
    for label, (weights, alpha) in CANDIDATES.items():
        scores, forecasts = [], []
        for seed in range(args.seeds):
            result = probe_candidate(
                spec, inputs, weights, alpha, probe.model_copy(update={"seed": seed})
            )
            assert result.stability is not None
            scores.append(result.stability.stability)
            forecast = fit_reward_curve(
                [step.step for step in result.steps], [step.reward_mean for step in result.steps]
            )
            forecasts.append(
                f"A={forecast.asymptote:.3f} B={forecast.efficiency:.2f} R2={forecast.r2:.2f}"
                if forecast.asymptote is not None
                and forecast.efficiency is not None
                and forecast.r2 is not None
                else f"none ({forecast.reason})"
            )
        sd = statistics.stdev(scores) if len(scores) > 1 else math.nan
        widths = [mean_interval(scores[:n]) for n in range(1, len(scores) + 1) if n >= 2]
        halfs = ", ".join(
            f"n={w.n}: ±{(w.high - w.low) / 2:.3f}" for w in widths if w.high is not None
        )
        print(f"{label:34s} seeds {[round(s, 3) for s in scores]}  sd {sd:.3f}  95% {halfs}")
        print(f"{'':34s} reward forecast per seed: {'; '.join(forecasts)}")
        means.append(statistics.mean(scores))
        variances.append(sd**2)
    pooled = math.sqrt(statistics.mean(variances))
    between = statistics.stdev(means)
    print(
        f"pooled seed sd {pooled:.3f}; sd between candidate means {between:.3f}; "
        f"ratio {between / pooled:.2f}; wall {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
