"""What pinning the demo world's kernels costs: base-model training steps, pinned against native.

The demo world trains on pinned kernels (``sweeps.demo.world.PINNED_KERNELS``: PyTorch at AVX2,
MKL's conditional numerical reproducibility on its AVX2 branch, one thread) so that a recipe
and seed give the same weights on every AVX2 machine of one CPU vendor
(``docs/demo-world.md``). This times the world's costliest stage, the base's pretraining step
(the default recipe's model, batch and block size, AdamW, gradient clipping), in fresh
processes under these environments:

- ``native``: one thread, the kernels the CPU would pick (the baseline);
- ``pinned``: the build's environment (what ships);
- ``pinned-2-threads``: the same pins with two threads and passive OpenMP waiting (not shipped);
- ``compatible`` and ``compatible-2-threads``: the pins with MKL's vendor-neutral COMPATIBLE
  branch (SSE2 code) instead of its Intel-only AVX2 branch (not shipped: that world failed a
  gate, ``docs/demo-world.md``).

Rounds alternate the environments so drift in the machine's load hits them all alike; each
process runs ``--warmup`` steps, then times ``--steps``. Prints the median seconds per step of
each and its ratio to ``native``, with the load average. Usage::

    .venv/bin/python benchmarks/world_kernels.py [--rounds 2] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

from sweeps.demo.world import PINNED_KERNELS, WorldRecipe, cpu_model

STEP_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from transformers import LlamaForCausalLM
    from sweeps.demo._tokenizer import build_tokenizer
    from sweeps.demo.world import WorldRecipe, model_config

    threads, warmup, steps = (int(a) for a in sys.argv[1:4])
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    recipe = WorldRecipe()
    tokenizer = build_tokenizer()
    vocab = len(tokenizer)
    config = model_config(recipe, tokenizer)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, vocab, (recipe.base.batch_size, recipe.block_size))

    def step():
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    print(json.dumps({
        "seconds_per_step": (time.perf_counter() - started) / steps,
        "capability": torch.backends.cpu.get_cpu_capability(),
    }))
    """
)


def environments() -> dict[str, tuple[int, dict[str, str]]]:
    """Name -> (threads, environment overrides)."""
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    two = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    compatible = {**PINNED_KERNELS, "MKL_CBWR": "COMPATIBLE,STRICT"}
    return {
        "native": (1, one),
        "pinned": (1, {**PINNED_KERNELS, **one}),
        "pinned-2-threads": (2, {**PINNED_KERNELS, **two}),
        "compatible": (1, {**compatible, **one}),
        "compatible-2-threads": (2, {**compatible, **two}),
    }


def time_steps(threads: int, overrides: dict[str, str], warmup: int, steps: int) -> dict:
    """Seconds per training step in a fresh process with ``overrides`` in its environment."""
    clean = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    completed = subprocess.run(
        [sys.executable, "-c", STEP_SCRIPT, str(threads), str(warmup), str(steps)],
        env={**clean, **overrides},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    recipe = WorldRecipe()
    print(
        f"base model step: batch {recipe.base.batch_size} x {recipe.block_size} tokens, "
        f"hidden {recipe.hidden_size}, {recipe.num_layers} layers; {args.rounds} rounds of "
        f"{args.steps} steps after {args.warmup} warm-up; load average "
        f"{os.getloadavg()[0]:.2f}; {cpu_model()}"
    )
    runs: dict[str, list[float]] = {name: [] for name in environments()}
    capabilities: dict[str, str] = {}
    for _ in range(args.rounds):
        for name, (threads, overrides) in environments().items():
            result = time_steps(threads, overrides, args.warmup, args.steps)
            runs[name].append(result["seconds_per_step"])
            capabilities[name] = result["capability"]
    native = statistics.median(runs["native"])
    for name, values in runs.items():
        median = statistics.median(values)
        print(
            f"{name:<21} {capabilities[name]:<7} {median:.3f} s/step "
            f"(runs {', '.join(f'{v:.3f}' for v in values)})  ratio to native {median / native:.2f}"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
