"""Build, cache and load the demo world: a base and two SFT models, trained here, and gated.

A world lives in ``<out>/<key>/`` where ``key`` hashes the recipe and the seed, so a build is
reused until either changes. It is trained in a private temporary directory and renamed into
place under a file lock: a reader never sees half a world and two builders never race.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from evaluators import task_family as task
from sweeps.exceptions import SweepsError

if TYPE_CHECKING:
    from rich.progress import Progress
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

WORLD_FORMAT = 2
# Bump when this module's training or gates change (the sources of the task family, corpus,
# tokenizer and training loops are part of the cache key already).
CODE_VERSION = 5
MODEL_DIRS = {"base": "base", "sft_instruct": "sft-instruct", "sft_reasoning": "sft-reasoning"}
#: The built-in reward rule the demo world's probe uses (``evaluators.reward_rules``).
REWARD_RULE = "bai_world"
#: Preconditions a world may miss without stopping its build (computed, recorded and printed
#: as failed). Empty: every gate stops a build (docs/demo-world.md).
UNENFORCED_GATES: tuple[str, ...] = ()
#: The stage-2 ratios (alpha, the base's share) at which the smoothness gate scores merges.
ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: The kernels the training process is pinned to on x86-64 CPUs with AVX2: PyTorch's own
#: vectorised kernels at AVX2 and MKL's conditional numerical reproducibility on its AVX2
#: branch (strict: independent of memory alignment). Left to themselves both pick the widest
#: instructions of the CPU (AVX-512, AMX), and the same recipe and seed trained other weights,
#: and passed or failed other gates, on different machines of one kind (docs/demo-world.md).
#: MKL's AVX2 branch exists on Intel CPUs only (elsewhere MKL picks its own), so the weights
#: are the same across Intel CPUs, and across the AMD CPUs seen so far, but differ between the
#: two vendors; MKL's vendor-neutral COMPATIBLE branch trained a world that failed a gate.
PINNED_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
#: One thread for every library (torch.set_num_threads(1) in the process as well): results that
#: do not depend on the core count, and no spin-waiting threads on a shared CPU.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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
    max_position_embeddings: int = 384
    number_feature_scale: float = 0.1
    train_problems: int = 6_000
    pretrain_documents: int = 40_000
    block_size: int = 128
    worked_share: float = 0.2
    """Share of the base's pretraining sentences that are worked train-split R problems."""
    direct_shares: tuple[float, ...] = (0.8, 0.65, 0.2)
    """Share of those answered without work (``answer N``), by steps (2, 3, 4); the rest show
    their work in one-line steps."""
    base: StageRecipe = StageRecipe(steps=1000, batch_size=16, learning_rate=3e-3)
    instruct: StageRecipe = StageRecipe(steps=150, batch_size=32, learning_rate=2e-4)
    reasoning: StageRecipe = StageRecipe(steps=300, batch_size=16, learning_rate=2.2e-4)
    heldout_problems: int = 128
    probe_prompts: int = 256
    probe_knowledge_share: float = 0.25
    """Share of the probe prompts that are K questions (the rest are R problems)."""
    max_new_tokens: int = 160
    min_domain_gain: float = 0.05
    min_knowledge_loss: float = 0.01
    min_length_ratio: float = 3.0
    min_merge_retention: float = 0.7
    max_alpha_jump: float = 0.3
    max_task_vector_ratio: float = 0.1
    enforce_gates: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldRecipe:
        """The recipe of :func:`dataclasses.asdict` output (a world.json's ``recipe``)."""
        fields = dict(data)
        for stage in ("base", "instruct", "reasoning"):
            fields[stage] = StageRecipe(**fields[stage])
        fields["direct_shares"] = tuple(fields["direct_shares"])
        return cls(**fields)

    def cache_key(self, seed: int) -> str:
        """The directory name of this recipe's world for ``seed`` (on this machine's kernels)."""
        payload = json.dumps(
            {
                "recipe": dataclasses.asdict(self),
                "seed": seed,
                "code": CODE_VERSION,
                "sources": _source_fingerprint(),
                "kernels": kernel_environment() or "native",
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _source_fingerprint() -> str:
    """SHA-256 of the code that decides what a recipe trains (task family, corpus, training)."""
    from evaluators import task_family
    from sweeps.demo import _corpus, _tokenizer, _training

    digest = hashlib.sha256()
    for module in (task_family, _corpus, _tokenizer, _training):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class GateCheck:
    """One precondition gate: ``value`` must be ``>=`` (or ``<=``) ``threshold``."""

    name: str
    value: float
    threshold: float
    passed: bool
    description: str
    comparison: str = ">="


def _gate(name: str, value: float, comparison: str, threshold: float, what: str) -> GateCheck:
    passed = value >= threshold if comparison == ">=" else value <= threshold
    return GateCheck(
        name, round(value, 4), threshold, passed, f"{what} {comparison} {threshold}", comparison
    )


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
        """The pretrained base model (holds K, rambles; alpha is its share of a BAI merge)."""
        return self.root / MODEL_DIRS["base"]

    @property
    def sft_instruct(self) -> Path:
        """The instruction SFT model: K answers and one-line R reasoning (paradigm 1's start)."""
        return self.root / MODEL_DIRS["sft_instruct"]

    @property
    def sft_reasoning(self) -> Path:
        """The long-reasoning "distilled" SFT model (paradigms 2 and 3 start from it)."""
        return self.root / MODEL_DIRS["sft_reasoning"]

    @property
    def reward_rule(self) -> str:
        """Name of the built-in reward rule the world's probe uses (a spec's ``reward_rule``)."""
        return REWARD_RULE

    @property
    def prompts(self) -> Path:
        """RL probe prompts (probe split, K and R), lines ``{"prompt", "answer", "domain"}``."""
        return self.root / "prompts.jsonl"

    @property
    def world_json(self) -> Path:
        """The build record: recipe, seed, gates, scores, task-vector ratios, hashes, timings."""
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
            _record_gates(staging, recipe)
            world = load_world(staging)
            failed = [
                check
                for check in world.gates
                if not check.passed and check.name not in UNENFORCED_GATES
            ]
            if failed and recipe.enforce_gates:
                record = out_dir / f"{key}.failed.json"
                shutil.copyfile(world.world_json, record)
                raise QualityGateError(
                    "demo world failed its quality gates: "
                    + "; ".join(f"{c.name} = {c.value:.3f} ({c.description})" for c in failed)
                    + f" (build record: {record})"
                )
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_world(target)


def kernel_environment() -> dict[str, str]:
    """The environment that pins the training process's kernels (:data:`PINNED_KERNELS`).

    Empty on a CPU without AVX2 (another architecture, or an x86-64 CPU older than 2013):
    there the build runs on the CPU's own kernels, its cache key says so, and its weights
    are that machine's.
    """
    import torch

    has_avx2 = getattr(torch.cpu, "_is_avx2_supported", None)
    return dict(PINNED_KERNELS) if has_avx2 is not None and has_avx2() else {}


def _train_world(root: Path, *, recipe: WorldRecipe, seed: int, key: str, progress: bool) -> None:
    """Train the world into ``root`` in a child process on pinned kernels (see ``train_here``).

    Kernel choices are made once per process, when a library first computes, so they can only
    be pinned in a process of the build's own (:data:`PINNED_KERNELS`).
    """
    import sweeps

    project = str(Path(str(sweeps.__file__)).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))
    request = {
        "root": str(root),
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "key": key,
        "progress": progress,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "sweeps.demo._train_process"],
        input=json.dumps(request),
        text=True,
        env={**os.environ, **kernel_environment(), **_ONE_THREAD, "PYTHONPATH": python_path},
        check=False,
    )
    if completed.returncode != 0:
        raise DemoWorldError(
            f"the demo world's training process failed with exit code {completed.returncode} "
            "(its error is printed above)"
        )


def _record_gates(root: Path, recipe: WorldRecipe) -> None:
    """Check the precondition gates on the scores the training process recorded."""
    record_path = root / "world.json"
    record = json.loads(record_path.read_text())
    evaluation = record["gates"]
    gates = _gate_checks(recipe, evaluation)
    record["gates"] = {
        "passed": all(check.passed for check in gates),
        "checks": [dataclasses.asdict(check) for check in gates],
        **evaluation,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")


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


def model_config(recipe: WorldRecipe, tokenizer: Any) -> Any:
    """The ``LlamaConfig`` every model of a world shares (untied embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(
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


def train_here(root: Path, *, recipe: WorldRecipe, seed: int, key: str, progress: bool) -> None:
    """Train, score and record the world into ``root`` in this process (on its kernels).

    ``world.json``'s ``gates`` holds the scores the gates are checked on (``_record_gates``).
    """
    import torch
    from transformers import LlamaForCausalLM

    from sweeps.demo import _corpus as corpus
    from sweeps.demo import _training as training
    from sweeps.demo._tokenizer import NUMBER_RANGE, build_tokenizer

    started = time.perf_counter()
    cpu_started = time.process_time()
    stage_seconds: dict[str, float] = {}
    final_losses: dict[str, float] = {}
    tokenizer = build_tokenizer()
    config = model_config(recipe, tokenizer)
    train = task.generate_problems(seed, recipe.train_problems, "train")
    train_facts = task.facts("train")
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
            model.generation_config.pad_token_id = pad
            model.generation_config.bos_token_id = tokenizer.bos_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)

        clock = time.perf_counter()
        base = LlamaForCausalLM(config)
        training.seed_number_embeddings(
            base,
            {cast(int, tokenizer.convert_tokens_to_ids(str(n))): n for n in NUMBER_RANGE},
            recipe.number_feature_scale,
        )
        documents = corpus.pretraining_documents(
            train_facts,
            train,
            rng,
            recipe.pretrain_documents,
            worked_share=recipe.worked_share,
            direct_shares=recipe.direct_shares,
        )
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

        # K and R equally often in sft-instruct's batches.
        knowledge = corpus.instruct_examples(train_facts, [])
        arithmetic = corpus.instruct_examples([], train)
        repeats = max(1, len(arithmetic) // max(1, len(knowledge)))
        sft_data = {
            "sft_instruct": knowledge * repeats + arithmetic,
            "sft_reasoning": corpus.reasoning_examples(train),
        }
        finetuned: dict[str, PreTrainedModel] = {}
        for name, stage_recipe in (
            ("sft_instruct", recipe.instruct),
            ("sft_reasoning", recipe.reasoning),
        ):
            clock = time.perf_counter()
            model = LlamaForCausalLM(config)
            model.load_state_dict(base.state_dict())
            final_losses[name] = training.supervised_finetune(
                model,
                training.encode_examples(sft_data[name], tokenizer),
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
        evaluation = _evaluate_world(
            recipe, seed, base, finetuned, tokenizer, display.add_task, display.advance
        )
        stage_seconds["gates"] = time.perf_counter() - clock

    probe_rows = _probe_prompts(recipe, seed)
    with (root / "prompts.jsonl").open("w") as handle:
        for row in probe_rows:
            handle.write(json.dumps(row) + "\n")

    models = {}
    trained: dict[str, PreTrainedModel] = {"base": base, **finetuned}
    for name, trained_model in trained.items():
        weights = root / MODEL_DIRS[name] / "model.safetensors"
        models[name] = {
            "path": MODEL_DIRS[name],
            "parameters": sum(p.numel() for p in trained_model.parameters()),
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
        # CPU time of the (single-threaded) build: its wall time on an otherwise idle core.
        "build_cpu_seconds": round(time.process_time() - cpu_started, 1),
        "stage_seconds": {name: round(value, 1) for name, value in stage_seconds.items()},
        "versions": _versions(),
        "kernels": {
            "capability": torch.backends.cpu.get_cpu_capability(),
            "cpu": cpu_model(),
            **{name: os.environ.get(name, "") for name in PINNED_KERNELS},
        },
        "models": models,
        "reward_rule": REWARD_RULE,
        "max_positions": recipe.max_position_embeddings,
        "prompts": {
            "path": "prompts.jsonl",
            "split": "probe",
            "count": len(probe_rows),
            "longest_tokens": max(len(tokenizer(row["prompt"])["input_ids"]) for row in probe_rows),
        },
        "gates": evaluation,
    }
    (root / "world.json").write_text(json.dumps(record, indent=2) + "\n")


def _probe_prompts(recipe: WorldRecipe, seed: int) -> list[dict[str, Any]]:
    """The probe split's prompts: R problems and (``probe_knowledge_share``) K questions."""
    n_knowledge = round(recipe.probe_prompts * recipe.probe_knowledge_share)
    facts = task.facts("probe")
    random.Random(f"probe-{seed}").shuffle(facts)
    rows = [
        {"prompt": fact.question, "answer": fact.answer, "domain": "K"}
        for fact in facts[:n_knowledge]
    ]
    problems = task.generate_problems(seed, recipe.probe_prompts - len(rows), "probe")
    rows += [{"prompt": p.question, "answer": str(p.answer), "domain": "R"} for p in problems]
    random.Random(f"probe-order-{seed}").shuffle(rows)
    return rows


def knowledge_items(split: task.Split = "heldout") -> list[tuple[str, list[str], int]]:
    """The K multiple-choice items of ``split``: ``(question, ["answer red", ...], label)``."""
    items = []
    for fact in task.facts(split):
        values, label = fact.choices()
        items.append((fact.question, [f"answer {value}" for value in values], label))
    return items


def task_vector_ratio(base: dict[str, Any], finetuned: dict[str, Any]) -> float:
    """``||finetuned - base|| / ||base||`` over all parameters (the task vector's relative size)."""
    import torch

    delta = sum(float(torch.sum((finetuned[k] - base[k]).float() ** 2)) for k in base)
    norm = sum(float(torch.sum(base[k].float() ** 2)) for k in base)
    return (delta / norm) ** 0.5


def _merged(
    base: PreTrainedModel, sfts: list[PreTrainedModel], weights: list[float], alpha: float
) -> PreTrainedModel:
    """The BAI merge ``alpha * base + (1 - alpha) * sum_i w_i * sft_i`` as a new model."""
    merged = copy.deepcopy(base)
    base_state = base.state_dict()
    states = [model.state_dict() for model in sfts]
    mixed = {}
    for name, tensor in base_state.items():
        stage1 = sum(w * state[name] for w, state in zip(weights, states, strict=True))
        mixed[name] = alpha * tensor + (1 - alpha) * stage1
    merged.load_state_dict(mixed)
    return merged


def _evaluate_world(
    recipe: WorldRecipe,
    seed: int,
    base: PreTrainedModel,
    finetuned: dict[str, PreTrainedModel],
    tokenizer: Any,
    add_task: Any,
    advance: Any,
) -> dict[str, Any]:
    """Held-out K and R scores, lengths and task-vector ratios of every model and merge."""
    from sweeps.demo.generation import choice_accuracy, evaluate_generations, generate

    items = knowledge_items("heldout")
    problems = task.generate_problems(seed, recipe.heldout_problems, "heldout")
    questions = [p.question for p in problems]
    answers = [p.answer for p in problems]
    sfts = [finetuned["sft_instruct"], finetuned["sft_reasoning"]]
    named: list[tuple[str, Any]] = [("base", base), *finetuned.items()]
    named += [(f"merge_w0.5_alpha{alpha:g}", alpha) for alpha in ALPHA_GRID[:-1]]
    gate_task = add_task("precondition gates", total=len(named), status="")
    scores: dict[str, dict[str, Any]] = {}
    for name, model_or_alpha in named:
        model = (
            _merged(base, sfts, [0.5, 0.5], model_or_alpha)
            if isinstance(model_or_alpha, float)
            else model_or_alpha
        )
        generations = generate(model, tokenizer, questions, recipe.max_new_tokens)
        stats = evaluate_generations(generations, answers)
        scores[name] = {
            "K": round(choice_accuracy(model, tokenizer, items), 4),
            "R": round(stats.accuracy, 4),
            "mean_length": round(stats.mean_length, 2),
            "finished_rate": round(stats.finished_rate, 4),
            "example": {"prompt": generations[0].prompt, "response": generations[0].text},
        }
        advance(gate_task)
    base_state = base.state_dict()
    ratios = {
        name: round(task_vector_ratio(base_state, model.state_dict()), 4)
        for name, model in finetuned.items()
    }
    return {
        "heldout_counts": {"K": len(items), "R": len(problems)},
        "scores": scores,
        "task_vector_ratio": ratios,
    }


def _gate_checks(recipe: WorldRecipe, evaluation: dict[str, Any]) -> list[GateCheck]:
    scores = evaluation["scores"]
    base, instruct, reasoning = scores["base"], scores["sft_instruct"], scores["sft_reasoning"]
    merge = scores["merge_w0.5_alpha0"]
    along_alpha = [*(scores[f"merge_w0.5_alpha{a:g}"] for a in ALPHA_GRID[:-1]), base]
    jump = max(
        abs(b[domain] - a[domain])
        for domain in ("K", "R")
        for a, b in itertools.pairwise(along_alpha)
    )
    ratios = evaluation["task_vector_ratio"]
    length_ratio = reasoning["mean_length"] / max(instruct["mean_length"], 1e-9)
    return [
        _gate(
            "instruct_beats_base_on_K",
            instruct["K"] - base["K"],
            ">=",
            recipe.min_domain_gain,
            "sft-instruct's held-out K score minus the base's",
        ),
        _gate(
            "reasoning_beats_base_on_R",
            reasoning["R"] - base["R"],
            ">=",
            recipe.min_domain_gain,
            "sft-reasoning's held-out R score minus the base's",
        ),
        _gate(
            "reasoning_forgets_K",
            base["K"] - reasoning["K"],
            ">=",
            recipe.min_knowledge_loss,
            "the base's held-out K score minus sft-reasoning's",
        ),
        _gate(
            "reasoning_length_ratio",
            length_ratio,
            ">=",
            recipe.min_length_ratio,
            "sft-reasoning's greedy R response length over sft-instruct's",
        ),
        _gate(
            "merge_keeps_K",
            merge["K"] / max(instruct["K"], 1e-9),
            ">=",
            recipe.min_merge_retention,
            "K score of the merge w=(0.5,0.5), alpha=0 over sft-instruct's",
        ),
        _gate(
            "merge_keeps_R",
            merge["R"] / max(reasoning["R"], 1e-9),
            ">=",
            recipe.min_merge_retention,
            "R score of the merge w=(0.5,0.5), alpha=0 over sft-reasoning's",
        ),
        _gate(
            "alpha_smooth",
            jump,
            "<=",
            recipe.max_alpha_jump,
            f"largest K or R change between neighbouring alpha {ALPHA_GRID} at w=(0.5,0.5)",
        ),
        _gate(
            "task_vectors_small",
            max(ratios.values()),
            "<=",
            recipe.max_task_vector_ratio,
            "largest ||sft - base|| / ||base|| of the two SFT models",
        ),
    ]


def cpu_model() -> str:
    """The CPU's vendor and model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere).

    Recorded beside a world's kernels because the pinned kernels give the same weights only on
    CPUs of one vendor (:data:`PINNED_KERNELS`).
    """
    import platform

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    described = " ".join(filter(None, (fields.get("vendor_id"), fields.get("model name"))))
    return described or platform.processor() or platform.machine() or "unknown"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "tokenizers")}
