"""Probe overhead: ``run_probe`` against a bare ``PPOTrainer.train()``, same models and config.

Both sides start from the same in-memory actor and reward model (copied before the clock starts)
and time everything after that (wall time, and the process's CPU time, which a busy machine
disturbs less): seeding, the reference and value copies, building the trainer,
training. The bare side is what a TRL user would write with the probe's ``PPOConfig`` and
dataset; the probe adds the recording reward wrapper, the per-step callback, step metrics and the
stability summary. The order alternates every round. Both sides train the same trajectory, so
the script also checks that they end with bitwise-identical actor weights.

    .venv/bin/python benchmarks/probe_overhead.py              # the demo world if built, else tiny
    .venv/bin/python benchmarks/probe_overhead.py --tiny --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _models(args: argparse.Namespace):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if not args.tiny:
        from sweeps.demo import build_world, load_world

        world = (
            load_world(args.world)
            if (args.world / "world.json").is_file()
            else build_world(args.world, seed=0, progress=True)
        )
        actor = AutoModelForCausalLM.from_pretrained(world.sft_reasoning)
        tokenizer = AutoTokenizer.from_pretrained(world.sft_reasoning)
        # The world rewards with a rule; bare PPO needs a reward model, so both sides score with
        # a sequence-classification model on the base's backbone (an untrained score head).
        reward = AutoModelForSequenceClassification.from_pretrained(world.base, num_labels=1)
        from evaluators.probe import load_prompts

        return (
            "demo world: sft-reasoning actor, reward model on the base backbone",
            actor,
            tokenizer,
            reward,
            (load_prompts(world.prompts)),
        )
    import sys

    sys.path.insert(0, str(REPO))
    from tests.tiny_models import make_checkpoint, tiny_config, tiny_tokenizer

    with tempfile.TemporaryDirectory() as root:
        path = make_checkpoint(Path(root) / "actor", dtype=torch.float32, seed=0)
        actor = AutoModelForCausalLM.from_pretrained(path)
    config = tiny_config()
    config.num_labels = 1
    torch.manual_seed(1)
    reward = AutoModelForSequenceClassification.from_config(config)
    prompts = [f"what is {a} plus {b} ?" for a in range(8) for b in range(4)]
    return "tiny random Llama (hidden 32, 2 layers)", actor, tiny_tokenizer(), reward, prompts


def bare_ppo(actor, tokenizer, reward_model, prompts, config) -> None:
    """A plain PPOTrainer run with the probe's PPOConfig and dataset, nothing recorded."""
    from datasets import Dataset
    from transformers import PrinterCallback, set_seed
    from trl.experimental.ppo import PPOTrainer
    from trl.experimental.utils import create_reference_model

    from evaluators.backends._trl_ppo import encode_prompts, ppo_config

    queries, _ = encode_prompts(tokenizer, prompts)
    set_seed(config.seed)
    value_model = copy.deepcopy(reward_model).requires_grad_(True)
    reference = create_reference_model(actor)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = PPOTrainer(
            args=ppo_config(config, output_dir, "cpu"),
            processing_class=tokenizer,
            model=actor,
            ref_model=reference,
            reward_model=reward_model,
            train_dataset=Dataset.from_dict({"input_ids": queries}),
            value_model=value_model,
        )
        trainer.remove_callback(PrinterCallback)  # the probe removes it too
        trainer.train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--world",
        type=Path,
        default=REPO / ".bai-sweep" / "demo-world",
        help="demo-world cache directory (built if needed) or one built world's directory",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random models, no demo world")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # TRL/transformers deprecation chatter, same on both sides

    from evaluators.probe import ProbeConfig, run_probe

    label, actor, tokenizer, reward, prompts = _models(args)
    config = ProbeConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        response_length=min(args.response_length, 16) if args.tiny else args.response_length,
        learning_rate=1e-5,
        device="cpu",
        early_stop=False,
    )
    print(f"models: {label}; {torch.get_num_threads()} torch thread(s)")
    print(f"config: {config.model_dump(include={'steps', 'batch_size', 'response_length'})}")

    def run(side: str) -> tuple[float, float, dict[str, torch.Tensor]]:
        fresh_actor, fresh_reward = copy.deepcopy(actor), copy.deepcopy(reward)
        started, started_cpu = time.perf_counter(), time.process_time()
        if side == "probe":
            run_probe(fresh_actor, tokenizer, fresh_reward, prompts, config)
        else:
            bare_ppo(fresh_actor, tokenizer, fresh_reward, prompts, config)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        return elapsed, cpu, {k: v.detach().clone() for k, v in fresh_actor.state_dict().items()}

    run("bare")  # warm-up: imports, first-call allocations
    times: dict[str, list[float]] = {"probe": [], "bare": []}
    cpu_times: dict[str, list[float]] = {"probe": [], "bare": []}
    identical = True
    for round_index in range(args.rounds):
        order = ("probe", "bare") if round_index % 2 == 0 else ("bare", "probe")
        weights = {}
        for side in order:
            elapsed, cpu, weights[side] = run(side)
            times[side].append(elapsed)
            cpu_times[side].append(cpu)
        identical &= all(
            torch.equal(weights["probe"][k], weights["bare"][k]) for k in weights["bare"]
        )
        ratio = times["probe"][-1] / times["bare"][-1]
        print(
            f"round {round_index + 1} ({order[0]} first): probe {times['probe'][-1]:.2f} s, "
            f"bare {times['bare'][-1]:.2f} s, ratio {ratio:.3f} (CPU time: probe "
            f"{cpu_times['probe'][-1]:.2f} s, bare {cpu_times['bare'][-1]:.2f} s)"
        )
    for name, samples in (("wall", times), ("CPU", cpu_times)):
        probe_median, bare_median = (statistics.median(samples[side]) for side in ("probe", "bare"))
        print(
            f"median {name} time: probe {probe_median:.2f} s, bare PPOTrainer {bare_median:.2f} s, "
            f"ratio {probe_median / bare_median:.3f}x (target <= 1.10x)"
        )
    print(f"same final actor weights on both sides: {identical}")


if __name__ == "__main__":
    main()
