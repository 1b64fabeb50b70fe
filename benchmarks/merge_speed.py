"""Benchmark of the BAI merge (issue 2 targets).

Measures, in one run:

1. whole-process wall time and peak RSS of ``bai-sweep merge`` against a *floor* process that
   only imports torch, reads every input tensor and writes an output of the same size
   (target: merge <= 1.3x the floor);
2. optionally (``--mergekit-python``) ``mergekit-multi`` running the same two BAI stages, from the
   YAML that ``bai-sweep merge --export-mergekit`` writes (targets: ours >= 3x faster, with at
   most half its peak RSS);
3. building 10 in-memory BAI actors for different (w, alpha) from loaded inputs against a plain
   fused torch linear combination over the same tensors (target: <= 1.5x).

Without ``--base``/``--sft`` it makes three random Llama checkpoints of ~267M parameters in bf16
(hidden 1024, 12 layers, vocab 32000, 200 MB shards), cached under ``--work-dir``. ``--small``
uses ~8M-parameter checkpoints for a quick run. Usage::

    .venv/bin/python benchmarks/merge_speed.py [--small] [--mergekit-python /tmp/mk-venv/bin/python]

Peak RSS is each process's own, as the kernel counts it: page-cache pages a process maps are
part of it, bytes it reads with ``pread`` (as our merge does) are not. The machine's load
average is printed with the figures, since every ratio moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SIZES = {
    "full": {"hidden": 1024, "layers": 12, "vocab": 32000, "intermediate": 4096, "shard": "200MB"},
    "small": {"hidden": 256, "layers": 4, "vocab": 8000, "intermediate": 1024, "shard": "4MB"},
}
WEIGHTS, ALPHA = (0.5, 0.5), 0.3
ACTOR_RATIOS = [
    ((w, 1.0 - w), a)
    for w, a in zip([i / 9 for i in range(10)], [0.1 * i for i in range(10)], strict=True)
]

# The floor: import torch, read every input tensor (into memory), write an output of the same
# size in shards of the same size, with safetensors' own writer.
FLOOR_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    out, max_shard, inputs = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    out.mkdir()
    def files(path):
        index = Path(path) / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            return sorted({Path(path) / f for f in weight_map.values()})
        return [Path(path) / "model.safetensors"]
    handles = [[safe_open(str(f), framework="pt") for f in files(p)] for p in inputs]
    shard, filled, count, weight_map = {}, 0, 0, {}
    def flush():
        global shard, filled, count
        count += 1
        save_file(shard, str(out / f"shard-{count}.safetensors"))
        weight_map.update({name: f"shard-{count}.safetensors" for name in shard})
        shard, filled = {}, 0
    for handle in handles[0]:
        for name in handle.keys():
            # get_tensor is a zero-copy view of the mmap: clone() really reads the bytes.
            tensors = [
                next(h for h in hs if name in h.keys()).get_tensor(name).clone() for hs in handles
            ]
            nbytes = tensors[0].numel() * tensors[0].element_size()
            if shard and filled + nbytes > max_shard:
                flush()
            shard[name] = tensors[0]
            filled += nbytes
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    """
)


def make_checkpoints(root: Path, size: str) -> tuple[Path, list[Path]]:
    """Three random bf16 Llama checkpoints (base, sft0, sft1) under ``root``, cached."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    spec = SIZES[size]
    paths = [root / name for name in ("base", "sft0", "sft1")]
    stamp = root / "complete.json"
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return paths[0], paths[1:]
    shutil.rmtree(root, ignore_errors=True)
    config = LlamaConfig(
        vocab_size=spec["vocab"],
        hidden_size=spec["hidden"],
        intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=16,
        num_key_value_heads=16,
        tie_word_embeddings=False,
        dtype=torch.bfloat16,
    )
    for seed, path in enumerate(paths):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        generator = torch.Generator().manual_seed(seed)
        state = {
            name: (torch.randn(p.shape, generator=generator) * 0.02).to(torch.bfloat16)
            for name, p in model.state_dict().items()
        }
        model.load_state_dict(state, assign=True)
        model.save_pretrained(path, max_shard_size=spec["shard"])
        print(f"made {path} ({sum(t.numel() for t in state.values()):,} parameters)", flush=True)
    stamp.write_text(json.dumps(spec))
    return paths[0], paths[1:]


# Linux keeps a process's peak RSS across execve, and a child forked (or vforked) from this
# benchmark starts from this process's own peak, which is large once it has held checkpoints.
# A small launcher process forks the measured command instead and reports its wall time and
# peak RSS: the command then starts from the launcher's few MB.
LAUNCHER = textwrap.dedent(
    """
    import os, sys, time
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execvp(sys.argv[2], sys.argv[2:])
    _, status, usage = os.wait4(pid, 0)
    with open(sys.argv[1], "w") as report:
        cpu = usage.ru_utime + usage.ru_stime
        report.write(f"{time.perf_counter() - started} {usage.ru_maxrss} {cpu}")
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def run_measured(label: str, command: list[str]) -> tuple[float, float, float]:
    """Run ``command``; return its wall time (s), its own peak RSS (MB) and its CPU time (s)."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        process = subprocess.run(
            [sys.executable, "-c", LAUNCHER, report.name, *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if process.returncode != 0:
            tail = process.stderr[-2000:]
            raise SystemExit(f"{command[0]} failed ({process.returncode}): {tail}")
        wall, maxrss_kb, cpu = report.read().split()
    elapsed, peak_mb, cpu_s = float(wall), int(maxrss_kb) / 1024, float(cpu)
    print(f"  {label}: {elapsed:.2f} s, {peak_mb:.0f} MB, CPU {cpu_s:.2f} s", flush=True)
    return elapsed, peak_mb, cpu_s


def measure_processes(base: Path, sfts: list[Path], work: Path, args: argparse.Namespace) -> dict:
    bai_sweep = Path(sys.executable).parent / "bai-sweep"
    shard = SIZES[args.size]["shard"]
    from sweeps.merge import parse_size

    export = work / "bai-mergekit.yaml"
    runs: dict[str, list[tuple[float, float, float]]] = {"floor": [], "bai-sweep merge": []}
    if args.mergekit_python:
        runs["mergekit-multi"] = []
    mergekit_config = work / "mergekit.yaml"
    # The three run in turn within each repeat, so that they see the same machine load.
    for repeat in range(args.repeats):
        out = work / f"floor-{repeat}"
        floor_command = [sys.executable, "-c", FLOOR_SCRIPT, str(out), str(parse_size(shard))]
        runs["floor"].append(run_measured("floor", [*floor_command, str(base), *map(str, sfts)]))
        shutil.rmtree(out)
        out = work / f"merge-{repeat}"
        command = [str(bai_sweep), "merge", "--base", str(base)]
        for sft in sfts:
            command += ["--sft", str(sft)]
        command += ["--weights", ",".join(map(str, WEIGHTS)), "--alpha", str(ALPHA)]
        command += ["--out", str(out), "--max-shard-size", shard]
        if repeat == 0:
            command += ["--export-mergekit", str(export)]
        runs["bai-sweep merge"].append(run_measured("bai-sweep merge", command))
        shutil.rmtree(out)
        if not args.mergekit_python:
            continue
        if repeat == 0:
            # The benchmark checkpoints carry no tokenizer: let mergekit skip it.
            stages = export.read_text().split("\n---\n")
            mergekit_config.write_text(
                "\n---\n".join(
                    "\n".join(line for line in stage.splitlines() if "tokenizer_source" not in line)
                    for stage in stages
                )
            )
        mergekit = Path(args.mergekit_python).parent / "mergekit-multi"
        out, intermediate = work / f"mk-{repeat}", work / f"mk-intermediate-{repeat}"
        command = [str(mergekit), str(mergekit_config), "--intermediate-dir", str(intermediate)]
        command += ["--out-path", str(out), "--no-lazy"]
        runs["mergekit-multi"].append(run_measured("mergekit-multi", command))
        shutil.rmtree(out)
        shutil.rmtree(intermediate)
    return {
        name: {
            "wall_s": statistics.median(wall for wall, _, _ in values),
            "peak_rss_mb": statistics.median(rss for _, rss, _ in values),
            "cpu_s": statistics.median(cpu for _, _, cpu in values),
            "runs": values,
        }
        for name, values in runs.items()
    }


def measure_actors(base: Path, sfts: list[Path], repeats: int) -> dict:
    import torch

    from sweeps.merge import bai_coefficients, load_merge_inputs

    started = time.perf_counter()
    inputs = load_merge_inputs(base, sfts)
    load_s = time.perf_counter() - started
    # The same tensors, as one [K, numel] float32 stack per tensor, converted once up front: the
    # baseline pays neither the per-block upcast of the stored (checkpoint-dtype) inputs nor
    # building the model.
    stacks = [torch.cat(blocks, dim=1).float() for blocks in inputs._blocks.values()]
    dtype = torch.bfloat16

    def plain_combination(weights, alpha):
        c = torch.tensor(bai_coefficients(weights, alpha), dtype=torch.float32)
        return [torch.mm(c.view(1, -1), stack).to(dtype) for stack in stacks]

    def build_actors():
        for weights, alpha in ACTOR_RATIOS:
            actor = inputs.build_actor(weights, alpha)
            del actor

    def plain_combinations():
        for weights, alpha in ACTOR_RATIOS:
            merged = plain_combination(weights, alpha)
            del merged

    # build_actor computes on one thread; so does the baseline (with two threads on a busy
    # 2-core machine the matmuls spin and the baseline's figure would flatter us).
    torch.set_num_threads(1)
    timings: dict[str, list[float]] = {"build_actor x10": [], "plain fused combination x10": []}
    build_actors()  # warm-up (imports, allocator)
    for _ in range(repeats):
        for name, function in (
            ("plain fused combination x10", plain_combinations),
            ("build_actor x10", build_actors),
        ):
            started = time.perf_counter()
            function()
            timings[name].append(time.perf_counter() - started)
    return {"load_inputs_s": load_s} | {name: statistics.median(v) for name, v in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="Base checkpoint (default: make one).")
    parser.add_argument("--sft", type=Path, action="append", help="SFT checkpoint (repeat).")
    parser.add_argument("--small", dest="size", action="store_const", const="small", default="full")
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "bai-merge-bench"
    )
    parser.add_argument("--mergekit-python", help="Python of a venv where mergekit is installed.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per measurement (median).")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args()

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if args.base and args.sft:
        base, sfts = args.base, args.sft
    else:
        base, sfts = make_checkpoints(work / f"checkpoints-{args.size}", args.size)
    load_before = f"{os.getloadavg()[0]:.2f}"
    processes = measure_processes(base, sfts, work, args)
    actors = measure_actors(base, sfts, args.repeats)

    floor, ours = processes["floor"], processes["bai-sweep merge"]
    print(f"\ninputs: {base} + {len(sfts)} SFT ({args.size}, median of {args.repeats} runs)")
    print(f"load average at start / end  {load_before} / {os.getloadavg()[0]:.2f}")
    for name, figures in processes.items():
        wall, rss, cpu = figures["wall_s"], figures["peak_rss_mb"], figures["cpu_s"]
        print(f"{name:<18} wall {wall:6.2f} s   peak RSS {rss:7.0f} MB   CPU {cpu:6.2f} s")
    print(f"merge / floor wall           {ours['wall_s'] / floor['wall_s']:.2f}x  (target <= 1.3x)")
    print(f"merge / floor peak RSS       {ours['peak_rss_mb'] / floor['peak_rss_mb']:.2f}x")
    if "mergekit-multi" in processes:
        mk = processes["mergekit-multi"]
        wall_ratio = mk["wall_s"] / ours["wall_s"]
        rss_ratio = ours["peak_rss_mb"] / mk["peak_rss_mb"]
        print(f"mergekit-multi / merge wall  {wall_ratio:.2f}x  (target >= 3x)")
        print(
            f"mergekit-multi / merge CPU   {mk['cpu_s'] / ours['cpu_s']:.2f}x  (user + system time)"
        )
        print(f"merge / mergekit-multi RSS   {rss_ratio:.2f}x  (target <= 0.5x)")
    build, plain = actors["build_actor x10"], actors["plain fused combination x10"]
    print(f"load_merge_inputs            {actors['load_inputs_s']:.2f} s (once)")
    print(f"build_actor x10              {build:.2f} s")
    print(f"plain fused combination x10  {plain:.2f} s")
    print(f"build_actor / plain          {build / plain:.2f}x  (target <= 1.5x)")
    if args.json:
        args.json.write_text(json.dumps({"processes": processes, "actors": actors}, indent=2))


if __name__ == "__main__":
    main()
