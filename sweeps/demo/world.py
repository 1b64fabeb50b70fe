"""Build, cache and load the demo world: base, two SFT models and a reward model, trained here.

A world lives in ``<out>/<key>/`` where ``key`` hashes the recipe and the seed, so a build is
reused until either changes. It is trained in a private temporary directory and renamed into
place under a file lock: a reader never sees half a world and two builders never race.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.demo import problems as task
from sweeps.exceptions import SweepsError

if TYPE_CHECKING:
    from rich.progress import Progress
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

WORLD_FORMAT = 1
# Bump when the training code changes what a recipe produces, so old caches are not reused.
CODE_VERSION = 2
MODEL_DIRS = {
    "base": "base",
    "sft_instruct": "sft-instruct",
    "sft_reasoning": "sft-reasoning",
    "reward": "reward",
}


class DemoWorldError(SweepsError):
    """The demo world could not be built or loaded."""


class QualityGateError(DemoWorldError):
    """The demo world failed its quality gates."""


@dataclass(frozen=True)
class StageRecipe:
    """Optimiser settings of one training stage."""

    steps: int
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class WorldRecipe:
    """Everything that determines a world besides its seed (hashed into the cache key)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    max_position_embeddings: int = 128
    number_feature_scale: float = 0.1
    train_problems: int = 20_000
    pretrain_documents: int = 80_000
    block_size: int = 64
    base: StageRecipe = StageRecipe(steps=500, batch_size=32, learning_rate=4e-3)
    instruct: StageRecipe = StageRecipe(steps=250, batch_size=64, learning_rate=2e-3)
    reasoning: StageRecipe = StageRecipe(steps=400, batch_size=64, learning_rate=2e-3)
    reward: StageRecipe = StageRecipe(steps=1200, batch_size=32, learning_rate=1e-3)
    reward_train_problems: int = 4_000
    """Problems giving every comparison; as many more give the correctness comparisons."""
    heldout_problems: int = 256
    reward_heldout_problems: int = 300
    probe_prompts: int = 256
    max_new_tokens: int = 32
    min_length_ratio: float = 3.0
    min_accuracy_gain: float = 0.15
    min_reward_accuracy: float = 0.8
    enforce_gates: bool = True

    def cache_key(self, seed: int) -> str:
        """The directory name of this recipe's world for ``seed``."""
        payload = json.dumps(
            {"recipe": dataclasses.asdict(self), "seed": seed, "code": CODE_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GateCheck:
    """One quality gate: ``value`` must reach ``threshold``."""

    name: str
    value: float
    threshold: float
    passed: bool
    description: str


@dataclass(frozen=True)
class DemoWorld:
    """A built world: paths of its checkpoints and prompt file, and its recorded gates."""

    root: Path
    seed: int
    recipe_hash: str
    gates: tuple[GateCheck, ...]
    metrics: dict[str, Any] = field(repr=False)
    """Everything else ``world.json`` records (accuracies, lengths, hashes, timings)."""

    @property
    def base(self) -> Path:
        """The pretrained base model (paradigm 1's starting point)."""
        return self.root / MODEL_DIRS["base"]

    @property
    def sft_instruct(self) -> Path:
        """The brief-answer instruction SFT model (paradigm 2)."""
        return self.root / MODEL_DIRS["sft_instruct"]

    @property
    def sft_reasoning(self) -> Path:
        """The long-reasoning "distilled" SFT model (paradigm 3)."""
        return self.root / MODEL_DIRS["sft_reasoning"]

    @property
    def reward(self) -> Path:
        """The sequence-classification reward model (``num_labels=1``)."""
        return self.root / MODEL_DIRS["reward"]

    @property
    def prompts(self) -> Path:
        """RL probe prompts, JSONL lines ``{"prompt": question, "answer": int}``."""
        return self.root / "prompts.jsonl"

    @property
    def world_json(self) -> Path:
        """The build record: recipe, seed, gates, parameter counts, weight hashes, timings."""
        return self.root / "world.json"

    @property
    def sfts(self) -> list[Path]:
        """The SFT models in merge order: ``[sft_instruct, sft_reasoning]``."""
        return [self.sft_instruct, self.sft_reasoning]

    @property
    def weights_hashes(self) -> dict[str, str]:
        """SHA-256 of each model's ``model.safetensors``, by model name."""
        return {name: info["weights_sha256"] for name, info in self.metrics["models"].items()}


def load_world(root: Path | str) -> DemoWorld:
    """Load a built world from its directory (the one holding ``world.json``); paths absolute."""
    root = Path(root).resolve()
    record_path = root / "world.json"
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise DemoWorldError(f"no demo world at {root} (missing world.json)") from None
    except json.JSONDecodeError as exc:
        raise DemoWorldError(f"corrupt {record_path}: {exc}") from None
    if record.get("format") != WORLD_FORMAT:
        raise DemoWorldError(
            f"{record_path} has format {record.get('format')!r}, not {WORLD_FORMAT}"
        )
    gates = tuple(GateCheck(**check) for check in record["gates"]["checks"])
    return DemoWorld(
        root=root,
        seed=record["seed"],
        recipe_hash=record["recipe_hash"],
        gates=gates,
        metrics=record,
    )


def build_world(
    out_dir: Path | str,
    *,
    seed: int = 0,
    progress: bool = True,
    recipe: WorldRecipe | None = None,
) -> DemoWorld:
    """Build the demo world under ``out_dir``, or reuse the one built for this recipe and seed.

    Args:
        out_dir: Cache directory; the world goes to ``out_dir/<recipe hash>/`` (the returned
            paths are absolute, so they stay valid in processes with another working directory).
        seed: Seed of every random choice (data, initialisation, batches).
        progress: Show a rich progress display on stderr.
        recipe: Sizes and training settings (default: :class:`WorldRecipe`).

    Raises:
        QualityGateError: The trained models missed a quality gate; no world is cached, only
            its build record (``out_dir/<key>.failed.json``).
    """
    from filelock import FileLock

    recipe = recipe or WorldRecipe()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    key = recipe.cache_key(seed)
    target = out_dir / key
    with FileLock(str(out_dir / f".{key}.lock")):
        if (target / "world.json").is_file():
            logger.info("reusing demo world %s", target)
            return load_world(target)
        # Holding the lock, any staging directory of this key is a dead builder's leftover.
        for leftover in out_dir.glob(f".building-{key}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        staging = out_dir / f".building-{key}-{os.getpid()}"
        try:
            _train_world(staging, recipe=recipe, seed=seed, key=key, progress=progress)
            world = load_world(staging)
            failed = [check for check in world.gates if not check.passed]
            if failed and recipe.enforce_gates:
                record = out_dir / f"{key}.failed.json"
                shutil.copyfile(world.world_json, record)
                raise QualityGateError(
                    "demo world failed its quality gates: "
                    + "; ".join(
                        f"{c.name} = {c.value:.3f} (needs >= {c.threshold:.3f})" for c in failed
                    )
                    + f" (build record: {record})"
                )
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_world(target)


@contextmanager
def _build_environment(seed: int) -> Iterator[None]:
    """Seeded, deterministic, single-thread torch; no tqdm bars (the rich display reports).

    One thread keeps the weights independent of the machine's core count, and two threads
    spin-wait badly when the CPU is shared (10x slower steps measured under load).
    """
    import torch
    from transformers.utils import logging as transformers_logging

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    bars = transformers_logging.is_progress_bar_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        if bars:
            transformers_logging.enable_progress_bar()


@contextmanager
def _progress_display(enabled: bool) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    ) as display:
        yield display


def _train_world(root: Path, *, recipe: WorldRecipe, seed: int, key: str, progress: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from sweeps.demo import _corpus as corpus
    from sweeps.demo import _training as training
    from sweeps.demo._tokenizer import NUMBER_RANGE, build_tokenizer
    from sweeps.demo.generation import evaluate_generations, generate

    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    final_losses: dict[str, float] = {}
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    train = task.generate_problems(seed, recipe.train_problems, "train")
    heldout = task.generate_problems(seed, recipe.heldout_problems, "heldout")
    probe = task.generate_problems(seed, recipe.probe_prompts, "probe")
    rng = random.Random(f"demo-world-{seed}")
    pad = tokenizer.pad_token_id

    with _build_environment(seed), _progress_display(progress) as display:

        def stage(name: str, steps: int) -> training.OnStep:
            task_id = display.add_task(name, total=steps, status="")

            def on_step(step: int, loss: float) -> None:
                display.update(task_id, completed=step + 1, status=f"loss {loss:.3f}")

            return on_step

        def save(model: PreTrainedModel, name: str) -> None:
            directory = root / MODEL_DIRS[name]
            if model.can_generate():
                model.generation_config.pad_token_id = pad
                model.generation_config.bos_token_id = tokenizer.bos_token_id
                model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)

        clock = time.perf_counter()
        base = LlamaForCausalLM(config)
        training.seed_number_embeddings(
            base,
            {tokenizer.convert_tokens_to_ids(str(n)): n for n in NUMBER_RANGE},
            recipe.number_feature_scale,
        )
        documents = corpus.pretraining_documents(train, rng, recipe.pretrain_documents)
        blocks = training.pack_documents(documents, tokenizer, recipe.block_size)
        final_losses["base"] = training.pretrain(
            base,
            blocks,
            steps=recipe.base.steps,
            batch_size=recipe.base.batch_size,
            learning_rate=recipe.base.learning_rate,
            rng=rng,
            on_step=stage("base", recipe.base.steps),
        )
        save(base, "base")
        stage_seconds["base"] = time.perf_counter() - clock

        finetuned: dict[str, PreTrainedModel] = {}
        for name, stage_recipe, response_of in (
            ("sft_instruct", recipe.instruct, lambda p: p.brief_answer),
            ("sft_reasoning", recipe.reasoning, lambda p: p.reasoning_trace),
        ):
            clock = time.perf_counter()
            model = LlamaForCausalLM(config)
            model.load_state_dict(base.state_dict())
            examples = training.encode_examples(
                [(p.question, response_of(p)) for p in train], tokenizer
            )
            final_losses[name] = training.supervised_finetune(
                model,
                examples,
                pad_token_id=pad,
                steps=stage_recipe.steps,
                batch_size=stage_recipe.batch_size,
                learning_rate=stage_recipe.learning_rate,
                rng=rng,
                on_step=stage(MODEL_DIRS[name], stage_recipe.steps),
            )
            save(model, name)
            finetuned[name] = model
            stage_seconds[name] = time.perf_counter() - clock

        clock = time.perf_counter()
        reward_config = copy.deepcopy(config)
        reward_config.num_labels = 1
        reward = LlamaForSequenceClassification(reward_config)
        reward.model.load_state_dict(base.model.state_dict())
        count = recipe.reward_train_problems
        reward_pairs = corpus.preference_pairs(train[:count], rng)
        reward_pairs += corpus.preference_pairs(
            train[count : 2 * count], rng, corpus.CORRECTNESS_PREFERENCES
        )
        chosen, rejected = training.encode_pair_sides(reward_pairs, tokenizer)
        final_losses["reward"] = training.train_reward_model(
            reward,
            chosen,
            rejected,
            pad_token_id=pad,
            steps=recipe.reward.steps,
            batch_size=recipe.reward.batch_size,
            learning_rate=recipe.reward.learning_rate,
            rng=rng,
            on_step=stage("reward", recipe.reward.steps),
        )
        save(reward, "reward")
        stage_seconds["reward"] = time.perf_counter() - clock

        clock = time.perf_counter()
        gate_task = display.add_task("quality gates", total=4, status="")
        questions = [p.question for p in heldout]
        answers = [p.answer for p in heldout]
        generation_stats = {}
        for name, model in (("base", base), *finetuned.items()):
            generations = generate(model, tokenizer, questions, recipe.max_new_tokens)
            generation_stats[name] = dataclasses.asdict(evaluate_generations(generations, answers))
            generation_stats[name]["examples"] = [
                {"prompt": g.prompt, "response": g.text} for g in generations[:3]
            ]
            display.advance(gate_task)
        pairs = corpus.preference_pairs(
            task.generate_problems(seed + 1, recipe.reward_heldout_problems, "heldout"), rng
        )
        outcomes = training.pairwise_accuracy(
            reward, *training.encode_pair_sides(pairs, tokenizer), pad_token_id=pad
        )
        display.advance(gate_task)
        stage_seconds["gates"] = time.perf_counter() - clock

    by_preference: dict[str, list[bool]] = {}
    for pair, outcome in zip(pairs, outcomes, strict=True):
        kinds = f"{pair.chosen_kind.value}>{pair.rejected_kind.value}"
        by_preference.setdefault(kinds, []).append(outcome)
    reward_accuracy = sum(outcomes) / len(outcomes)
    gates = _gate_checks(recipe, generation_stats, reward_accuracy)

    with (root / "prompts.jsonl").open("w") as handle:
        for problem in probe:
            handle.write(json.dumps({"prompt": problem.question, "answer": problem.answer}) + "\n")

    models = {}
    for name, model in (("base", base), *finetuned.items(), ("reward", reward)):
        weights = root / MODEL_DIRS[name] / "model.safetensors"
        models[name] = {
            "path": MODEL_DIRS[name],
            "parameters": sum(p.numel() for p in model.parameters()),
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "final_train_loss": round(final_losses[name], 4),
        }
    record = {
        "format": WORLD_FORMAT,
        "seed": seed,
        "recipe_hash": key,
        "recipe": dataclasses.asdict(recipe),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": {name: round(value, 1) for name, value in stage_seconds.items()},
        "versions": _versions(),
        "models": models,
        "prompts": {"path": "prompts.jsonl", "split": "probe", "count": len(probe)},
        "gates": {
            "passed": all(check.passed for check in gates),
            "checks": [dataclasses.asdict(check) for check in gates],
            "heldout": generation_stats,
            "reward_pairwise_accuracy": reward_accuracy,
            "reward_accuracy_by_preference": {
                kinds: sum(values) / len(values) for kinds, values in by_preference.items()
            },
        },
    }
    (root / "world.json").write_text(json.dumps(record, indent=2) + "\n")


def _gate_checks(
    recipe: WorldRecipe, stats: dict[str, dict[str, Any]], reward_accuracy: float
) -> list[GateCheck]:
    instruct, reasoning, base = stats["sft_instruct"], stats["sft_reasoning"], stats["base"]
    ratio = reasoning["mean_length"] / max(instruct["mean_length"], 1e-9)
    return [
        GateCheck(
            "reasoning_length_ratio",
            ratio,
            recipe.min_length_ratio,
            ratio >= recipe.min_length_ratio,
            "sft-reasoning's mean held-out response length over sft-instruct's",
        ),
        GateCheck(
            "instruct_accuracy_gain",
            instruct["accuracy"] - base["accuracy"],
            recipe.min_accuracy_gain,
            instruct["accuracy"] - base["accuracy"] >= recipe.min_accuracy_gain,
            "sft-instruct's held-out greedy accuracy minus base's",
        ),
        GateCheck(
            "reasoning_accuracy_gain",
            reasoning["accuracy"] - base["accuracy"],
            recipe.min_accuracy_gain,
            reasoning["accuracy"] - base["accuracy"] >= recipe.min_accuracy_gain,
            "sft-reasoning's held-out greedy accuracy minus base's",
        ),
        GateCheck(
            "reward_pairwise_accuracy",
            reward_accuracy,
            recipe.min_reward_accuracy,
            reward_accuracy >= recipe.min_reward_accuracy,
            "reward model ranks the preferred response first on held-out pairs",
        ),
    ]


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "tokenizers")}
