"""The demo world: tokenizer, cache, determinism, gates, and the built world's checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import re
import threading
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators import task_family as task
from evaluators.task_family import generate_problems
from sweeps.demo import (
    DemoWorld,
    Generation,
    QualityGateError,
    StageRecipe,
    WorldRecipe,
    build_world,
    evaluate_generations,
    generate,
    load_world,
)
from sweeps.demo import world as world_module
from sweeps.demo._corpus import pretraining_documents, worked_example
from sweeps.demo._tokenizer import MAX_POSITIONS, build_tokenizer
from sweeps.exceptions import SweepsError
from tests.evaluators._bench_support import network_guard

# A world small enough to train in seconds; its gates are computed and recorded, not enforced
# (``enforce_gates=False``: a recipe this small fails them).
TINY_STAGE = StageRecipe(steps=4, batch_size=4, learning_rate=1e-3)
TINY = WorldRecipe(
    hidden_size=32,
    intermediate_size=64,
    num_layers=1,
    num_heads=2,
    train_problems=300,
    pretrain_documents=300,
    base=TINY_STAGE,
    instruct=TINY_STAGE,
    reasoning=TINY_STAGE,
    heldout_problems=8,
    probe_prompts=8,
    max_new_tokens=8,
    enforce_gates=False,
)
GATES = [
    "instruct_beats_base_on_K",
    "reasoning_beats_base_on_R",
    "reasoning_forgets_K",
    "reasoning_length_ratio",
    "merge_keeps_K",
    "merge_keeps_R",
    "alpha_smooth",
    "task_vectors_small",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- tokenizer and generation helpers (no training) -------------------------------------------


def test_tokenizer_round_trips_through_auto_tokenizer(tmp_path):
    build_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    ids = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    assert len(ids) == 3 and tokenizer.unk_token_id not in ids
    assert tokenizer.padding_side == "left"
    encoded = tokenizer("what is 17 plus 8 minus 5 ?")["input_ids"]
    assert encoded[0] == tokenizer.bos_token_id and len(encoded) == 9
    assert tokenizer.unk_token_id not in encoded
    response = tokenizer("17 plus 8 is 25 . answer -3", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in response
    assert tokenizer.decode(response) == "17 plus 8 is 25 . answer -3"
    assert tokenizer.model_max_length == MAX_POSITIONS
    problem = generate_problems(0, 1, "train", min_steps=5, max_steps=5)[0]
    fact = task.all_facts()[0]
    for text in (problem.verbose_solution, fact.question, *fact.sentences()):
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text
    batch = tokenizer(["what is 1 plus 2 ?", "what is 3 ?"], padding=True)
    assert batch["input_ids"][1][:2] == [tokenizer.pad_token_id] * 2


def test_evaluate_generations_counts_answers_and_lengths():
    generations = [
        Generation("what is 1 plus 2 ?", "answer 3", 3, True),
        Generation("what is 5 minus 1 ?", "5 minus 1 is 4 . answer 5", 9, True),
        Generation("what is 2 plus 2 ?", "2 plus 2 is", 4, False),
    ]
    stats = evaluate_generations(generations, [3, 4, 4])
    assert stats.accuracy == pytest.approx(1 / 3)
    assert stats.mean_length == pytest.approx(16 / 3)
    assert stats.finished_rate == pytest.approx(2 / 3)
    assert stats.count == 3
    with pytest.raises(ValueError):
        evaluate_generations(generations, [3])


def test_worked_examples_show_their_work_by_the_recipe_shares():
    short, long = (generate_problems(0, 1, "train", min_steps=n, max_steps=n)[0] for n in (2, 4))
    rng = random.Random(0)
    for problem in (short, long):
        direct = worked_example(problem, rng, (1.0, 1.0, 1.0))
        assert direct == f"{problem.question} answer {problem.answer} ."
        assert worked_example(problem, rng, (0.0, 0.0, 0.0)).endswith(problem.brief_solution + " .")
    shown = [worked_example(long, rng, (1.0, 1.0, 0.25)) for _ in range(400)]
    assert 0.6 < sum(text.endswith(long.brief_solution + " .") for text in shown) / 400 < 0.9
    for share, expected in ((0.0, False), (0.5, True)):
        documents = pretraining_documents(
            task.facts("train"),
            [short, long],
            rng,
            50,
            worked_share=share,
            direct_shares=(1.0,) * 3,
        )
        assert len(documents) == 50
        assert any(re.search(r"\? answer \d", document) for document in documents) is expected


# --- reduced recipe: cache, determinism, gate enforcement -------------------------------------


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    return build_world(tmp_path_factory.mktemp("tiny-world"), seed=0, progress=False, recipe=TINY)


def test_tiny_world_layout_and_record(tiny_world):
    assert tiny_world.root.name == TINY.cache_key(0) == tiny_world.recipe_hash
    for directory in (tiny_world.base, tiny_world.sft_instruct, tiny_world.sft_reasoning):
        assert (directory / "model.safetensors").is_file()
        assert (directory / "tokenizer.json").is_file()
    record = json.loads(tiny_world.world_json.read_text())
    assert record["seed"] == 0 and record["recipe"]["hidden_size"] == 32
    assert record["build_seconds"] > 0
    for name, info in record["models"].items():
        weights = tiny_world.root / info["path"] / "model.safetensors"
        assert info["weights_sha256"] == _sha256(weights), name
        assert info["parameters"] > 0
    assert [check.name for check in tiny_world.gates] == GATES
    assert record["reward_rule"] == tiny_world.reward_rule == "bai_world"
    assert set(record["gates"]["task_vector_ratio"]) == {"sft_instruct", "sft_reasoning"}
    assert load_world(tiny_world.root) == tiny_world
    assert not list(tiny_world.root.parent.glob(".building-*"))


def test_same_seed_gives_the_same_weights(tiny_world, tmp_path):
    again = build_world(tmp_path, seed=0, progress=False, recipe=TINY)
    assert again.weights_hashes == tiny_world.weights_hashes
    assert again.prompts.read_text() == tiny_world.prompts.read_text()


def test_training_runs_on_the_pinned_kernels(tiny_world):
    # The machines CI and the sessions run on have AVX2 (and some AVX-512 and AMX).
    assert world_module.kernel_environment() == world_module.PINNED_KERNELS
    kernels = tiny_world.metrics["kernels"]
    assert kernels["capability"] == "AVX2"
    assert kernels["MKL_CBWR"] == "AVX2,STRICT"
    # MKL's AVX2 branch is Intel's only, so the record names the CPU the weights came from.
    assert kernels["cpu"] == world_module.cpu_model() != "unknown"


def test_the_builders_own_kernels_do_not_change_the_weights(tiny_world, tmp_path, monkeypatch):
    """The pins override whatever the building process runs on: the world is the same."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    pinned = build_world(tmp_path / "pinned", seed=0, progress=False, recipe=TINY)
    assert pinned.weights_hashes == tiny_world.weights_hashes
    # The control: unpinned, those kernels train other weights (so the check above can fail).
    monkeypatch.setattr(world_module, "PINNED_KERNELS", {})
    unpinned = build_world(tmp_path / "unpinned", seed=0, progress=False, recipe=TINY)
    assert unpinned.metrics["kernels"]["capability"] == "DEFAULT"
    assert unpinned.weights_hashes["base"] != tiny_world.weights_hashes["base"]


def test_recipe_round_trips_through_its_record(tiny_world):
    recipe = WorldRecipe.from_json(tiny_world.metrics["recipe"])
    assert recipe == TINY and recipe.cache_key(0) == tiny_world.recipe_hash


def test_a_failed_training_process_is_a_world_error(tmp_path):
    # Batches larger than the packed corpus: the training process raises and exits 1.
    broken = dataclasses.replace(TINY, base=StageRecipe(10_000, 10_000, 1e-3))
    with pytest.raises(world_module.DemoWorldError, match="training process failed"):
        build_world(tmp_path, progress=False, recipe=broken)
    assert not list(tmp_path.glob(".building-*"))


def test_cache_is_reused_and_a_new_seed_builds_a_new_world(tmp_path, monkeypatch):
    builds: list[int] = []
    train_world = world_module._train_world

    def counting_train_world(*args, **kwargs):
        builds.append(kwargs["seed"])
        return train_world(*args, **kwargs)

    monkeypatch.setattr(world_module, "_train_world", counting_train_world)
    first = build_world(tmp_path, seed=0, progress=False, recipe=TINY)
    stamp = first.world_json.stat().st_mtime_ns
    second = build_world(tmp_path, seed=0, progress=False, recipe=TINY)
    assert builds == [0]
    assert second == first and second.world_json.stat().st_mtime_ns == stamp
    other = build_world(tmp_path, seed=1, progress=False, recipe=TINY)
    assert builds == [0, 1]
    assert other.root != first.root
    assert other.weights_hashes["base"] != first.weights_hashes["base"]
    changed = build_world(
        tmp_path, seed=0, progress=False, recipe=dataclasses.replace(TINY, max_new_tokens=9)
    )
    assert builds == [0, 1, 0] and changed.root != first.root


def test_concurrent_builders_train_once(tmp_path, monkeypatch):
    builds: list[int] = []
    train_world = world_module._train_world

    def counting_train_world(*args, **kwargs):
        builds.append(kwargs["seed"])
        return train_world(*args, **kwargs)

    monkeypatch.setattr(world_module, "_train_world", counting_train_world)
    worlds: list[DemoWorld] = []
    threads = [
        threading.Thread(
            target=lambda: worlds.append(build_world(tmp_path, progress=False, recipe=TINY))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == [0]
    assert len(worlds) == 2 and worlds[0] == worlds[1]


def test_every_gate_is_recomputed_from_the_recorded_scores(tiny_world):
    record = json.loads(tiny_world.world_json.read_text())
    scores = record["gates"]["scores"]
    gates = {check.name: check for check in tiny_world.gates}
    base, instruct, reasoning = scores["base"], scores["sft_instruct"], scores["sft_reasoning"]
    merge = scores["merge_w0.5_alpha0"]
    expected = {
        "instruct_beats_base_on_K": instruct["K"] - base["K"],
        "reasoning_beats_base_on_R": reasoning["R"] - base["R"],
        "reasoning_forgets_K": base["K"] - reasoning["K"],
        "reasoning_length_ratio": reasoning["mean_length"] / instruct["mean_length"],
        "merge_keeps_K": merge["K"] / max(instruct["K"], 1e-9),
        "merge_keeps_R": merge["R"] / max(reasoning["R"], 1e-9),
        "task_vectors_small": max(record["gates"]["task_vector_ratio"].values()),
    }
    for name, value in expected.items():
        assert gates[name].value == pytest.approx(value, abs=1e-4), name
    along = [scores[f"merge_w0.5_alpha{a:g}"] for a in world_module.ALPHA_GRID[:-1]] + [base]
    jump = max(
        abs(right[domain] - left[domain])
        for domain in ("K", "R")
        for left, right in itertools.pairwise(along)
    )
    assert gates["alpha_smooth"].value == pytest.approx(jump, abs=1e-4)
    for check in tiny_world.gates:
        holds = (
            check.value >= check.threshold
            if check.comparison == ">="
            else check.value <= check.threshold
        )
        assert check.passed == holds, check.name


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"min_domain_gain": 1.01}, "instruct_beats_base_on_K"),
        ({"min_domain_gain": 1.01}, "reasoning_beats_base_on_R"),
        ({"min_knowledge_loss": 1.01}, "reasoning_forgets_K"),
        ({"min_length_ratio": 1e6}, "reasoning_length_ratio"),
        ({"min_merge_retention": 1e6}, "merge_keeps_K"),
        ({"min_merge_retention": 1e6}, "merge_keeps_R"),
        ({"max_alpha_jump": -1.0}, "alpha_smooth"),
        ({"max_task_vector_ratio": 0.0}, "task_vectors_small"),
    ],
)
def test_each_gate_failing_alone(tiny_world, monkeypatch, tmp_path, change, gate):
    """A failed gate stops the build with its name, and no world is cached."""
    failed = _failing_gate(tiny_world, change, gate)
    monkeypatch.setattr(world_module, "_gate_checks", lambda *_: [failed])
    strict = dataclasses.replace(TINY, enforce_gates=True, **change)
    with pytest.raises(QualityGateError, match=gate):
        build_world(tmp_path, progress=False, recipe=strict)
    assert not (tmp_path / strict.cache_key(0)).exists()


def _failing_gate(tiny_world: DemoWorld, change: dict, gate: str) -> world_module.GateCheck:
    record = json.loads(tiny_world.world_json.read_text())
    strict = dataclasses.replace(TINY, enforce_gates=True, **change)
    failed = {c.name: c for c in world_module._gate_checks(strict, record["gates"])}[gate]
    assert not failed.passed
    return failed


def test_every_gate_is_enforced():
    # docs/demo-world.md: the world meets every precondition, so none may fail silently.
    assert world_module.UNENFORCED_GATES == ()


def test_an_unenforced_gate_is_recorded_as_failed_without_stopping_the_build(
    tiny_world, monkeypatch, tmp_path
):
    gate, change = "reasoning_beats_base_on_R", {"min_domain_gain": 1.01}
    failed = _failing_gate(tiny_world, change, gate)
    monkeypatch.setattr(world_module, "_gate_checks", lambda *_: [failed])
    monkeypatch.setattr(world_module, "UNENFORCED_GATES", (gate,))
    strict = dataclasses.replace(TINY, enforce_gates=True, **change)
    world = build_world(tmp_path, progress=False, recipe=strict)
    assert [(c.name, c.passed) for c in world.gates] == [(gate, False)]
    assert world.metrics["gates"]["passed"] is False


def test_a_failed_gate_is_an_error_and_only_its_record_is_kept(tmp_path):
    strict = dataclasses.replace(TINY, enforce_gates=True, min_domain_gain=1.01)
    with pytest.raises(QualityGateError, match="instruct_beats_base_on_K") as failure:
        build_world(tmp_path, progress=False, recipe=strict)
    assert isinstance(failure.value, SweepsError)
    kept = sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock"))
    assert kept == [f"{strict.cache_key(0)}.failed.json"]
    assert json.loads((tmp_path / kept[0]).read_text())["gates"]["passed"] is False


def test_load_world_of_an_empty_directory_is_a_user_error(tmp_path):
    with pytest.raises(SweepsError, match="no demo world"):
        load_world(tmp_path)


def test_generate_on_a_tiny_model(tiny_world):
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.base)
    model = AutoModelForCausalLM.from_pretrained(tiny_world.sft_reasoning)
    assert model.config.max_position_embeddings == TINY.max_position_embeddings >= 16 + 256
    generations = generate(model, tokenizer, ["what is 1 plus 2 ?", "what is 3 ?"], 5)
    assert [g.prompt for g in generations] == ["what is 1 plus 2 ?", "what is 3 ?"]
    for generation in generations:
        assert 1 <= generation.num_tokens <= 5
        assert generation.finished or generation.num_tokens == 5


# --- the real world (built once per machine, cached in <repo>/.bai-sweep/demo-world) -----------


@pytest.mark.slow
def test_world_passes_and_records_its_gates(demo_world):
    record = json.loads(demo_world.world_json.read_text())
    checks = {check.name: check for check in demo_world.gates}
    assert list(checks) == GATES
    assert all(check.passed for check in checks.values())
    assert checks["reasoning_length_ratio"].threshold >= 3.0
    assert checks["merge_keeps_K"].threshold >= 0.7 and checks["merge_keeps_R"].threshold >= 0.7
    scores = record["gates"]["scores"]
    assert scores["sft_instruct"]["K"] > scores["base"]["K"]
    assert scores["sft_reasoning"]["K"] < scores["base"]["K"]
    assert scores["sft_reasoning"]["R"] > scores["base"]["R"]
    assert max(record["gates"]["task_vector_ratio"].values()) <= 0.1
    assert record["max_positions"] >= record["prompts"]["longest_tokens"] + 256
    for name, info in record["models"].items():
        weights = demo_world.root / info["path"] / "model.safetensors"
        assert info["weights_sha256"] == _sha256(weights), name
        assert 200_000 <= info["parameters"] <= 5_000_000


@pytest.mark.slow
def test_world_models_and_tokenizers_load_with_auto_classes(demo_world):
    for directory in (demo_world.base, demo_world.sft_instruct, demo_world.sft_reasoning):
        tokenizer = AutoTokenizer.from_pretrained(directory)
        assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}) == 3
        model = AutoModelForCausalLM.from_pretrained(directory)
        assert model.config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.slow
def test_world_prompts_are_the_probe_split(demo_world):
    rows = [json.loads(line) for line in demo_world.prompts.read_text().splitlines()]
    recipe = demo_world.metrics["recipe"]
    assert len(rows) == recipe["probe_prompts"]
    train = {
        p.question for p in generate_problems(demo_world.seed, recipe["train_problems"], "train")
    }
    train |= {fact.question for fact in task.facts("train")}
    domains = {row["domain"] for row in rows}
    assert domains == {"K", "R"}
    for row in rows:
        assert task.split_of(row["prompt"]) == "probe"
        assert task.expected_answer(row["prompt"]) == row["answer"]
        assert task.domain_of(row["prompt"]) == row["domain"]
        assert row["prompt"] not in train


@pytest.mark.slow
def test_world_sft_models_answer_as_trained(demo_world):
    tokenizer = AutoTokenizer.from_pretrained(demo_world.base)
    problems = generate_problems(demo_world.seed, 32, "heldout")
    questions, answers = [p.question for p in problems], [p.answer for p in problems]
    stats = {}
    for name, directory in (
        ("instruct", demo_world.sft_instruct),
        ("reasoning", demo_world.sft_reasoning),
    ):
        model = AutoModelForCausalLM.from_pretrained(directory)
        stats[name] = evaluate_generations(generate(model, tokenizer, questions, 160), answers)
    assert stats["reasoning"].mean_length >= 3 * stats["instruct"].mean_length
    assert stats["instruct"].finished_rate == 1.0


def test_world_paths_are_absolute_when_built_from_a_relative_path(tiny_world, monkeypatch):
    monkeypatch.chdir(tiny_world.root.parent)
    world = build_world(".", progress=False, recipe=TINY)
    assert world == tiny_world
    assert world.base.is_absolute() and world.prompts.is_absolute()
    assert load_world(tiny_world.root.name).root == tiny_world.root


def test_a_tiny_build_makes_no_network_connection(tmp_path, monkeypatch):
    # The training process's code, run here where the guard can see its connections.
    recipe = dataclasses.replace(TINY, probe_prompts=9)
    with network_guard(monkeypatch) as attempts:
        world_module.train_here(tmp_path, recipe=recipe, seed=0, key="guarded", progress=False)
    assert attempts == []
    assert json.loads((tmp_path / "world.json").read_text())["prompts"]["count"] == 9
