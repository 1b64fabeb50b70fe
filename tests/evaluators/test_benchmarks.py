"""Benchmark scoring: config, aggregate, shipped suite, error paths and tiny-model runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.benchmarks import (
    BenchmarkConfig,
    BenchmarkRunner,
    TaskRef,
    evaluate_benchmarks,
    evaluate_checkpoint,
    render_shipped_tasks,
    result_from_lm_eval,
)
from evaluators.exceptions import (
    BenchmarkConfigError,
    EvaluatorError,
    MalformedTaskError,
    ModelLoadError,
    TaskDataUnavailableError,
)
from evaluators.task_family import ANSWER_PATTERN, expected_answer, parse_problem, split_of
from evaluators.tasks import DEFAULT_REPORT, DEFAULT_SELECTION, SHIPPED_TASKS, TASKS_DIR
from evaluators.tasks.make_data import build_task_data, stale_task_data
from tests.evaluators._bench_support import network_guard, user_task_body, write_task_yaml
from tests.tiny_models import make_checkpoint

REPO = Path(__file__).resolve().parents[2]
LIMIT = 3


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bench-tiny")
    return (
        make_checkpoint(root / "a", seed=1, dtype=torch.float32),
        make_checkpoint(root / "b", seed=2, dtype=torch.float32),
    )


@pytest.fixture(scope="module")
def tokenizer(tiny_dirs: tuple[Path, Path]):
    return AutoTokenizer.from_pretrained(tiny_dirs[0])


def _load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch):
    with network_guard(monkeypatch) as attempts:
        yield attempts
    assert attempts == [], f"network connections attempted: {attempts}"


def _small(**fields: object) -> BenchmarkConfig:
    return BenchmarkConfig(limit=LIMIT, batch_size=8, device="cpu", **fields)


# --------------------------------------------------------------------------- config


def test_config_defaults_to_the_shipped_suite() -> None:
    config = BenchmarkConfig()
    assert [ref.name for ref in config.selection] == list(DEFAULT_SELECTION)
    assert [ref.name for ref in config.report] == list(DEFAULT_REPORT)
    assert set(DEFAULT_SELECTION).isdisjoint(DEFAULT_REPORT)
    assert {"bai_facts_mc", "bai_arith_gen"} <= set(DEFAULT_SELECTION)


def test_config_accepts_names_refs_and_the_tasks_alias() -> None:
    config = BenchmarkConfig.model_validate(
        {
            "tasks": [
                "bai_facts_mc",
                {"name": "bai_arith_gen", "weight": 3, "metric": "exact_match"},
            ],
            "report": "bai_arith_long_gen",
            "include_path": "some/dir",
        }
    )
    assert config.selection == (
        TaskRef(name="bai_facts_mc"),
        TaskRef(name="bai_arith_gen", weight=3.0, metric="exact_match"),
    )
    assert config.report == (TaskRef(name="bai_arith_long_gen"),)
    assert config.include_path == (Path("some/dir"),)
    assert config.task_names == ["bai_facts_mc", "bai_arith_gen", "bai_arith_long_gen"]
    # A dumped config validates back to the same config (SweepSpec embeds it).
    assert BenchmarkConfig.model_validate(config.model_dump()) == config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"selection": ["a"], "report": ["a"]}, "both selection and report"),
        ({"selection": ["a", "a"]}, "more than once"),
        ({"selection": []}, "at least 1"),
        ({"selection": [{"name": "a", "weight": 0}]}, "greater than 0"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"device": "gpu"}, "device must be"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_refuses_invalid_values(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BenchmarkConfig.model_validate(fields)


def test_overlap_is_allowed_only_when_asked() -> None:
    config = BenchmarkConfig(selection=["a", "b"], report=["b"], allow_overlap=True)
    assert config.task_names == ["a", "b"]
    with pytest.raises(ValidationError, match="b are in both selection and report"):
        BenchmarkConfig(selection=["a", "b"], report=["b"])
    with pytest.raises(ValidationError):
        config.limit = 3  # frozen


# --------------------------------------------------------------------------- aggregate


def _fake_lm_eval_results() -> dict:
    """A fake lm-eval results dict, shaped like what simple_evaluate returns."""
    return {
        "results": {
            "alpha": {"alias": "alpha", "acc,none": 0.5, "acc_stderr,none": 0.1},
            "beta": {
                "alias": "beta",
                "exact_match,strict-match": 0.8,
                "exact_match_stderr,strict-match": "N/A",
                "exact_match,flexible": 0.9,
            },
            "gamma": {"alias": "gamma", "acc,none": 0.1},
            "ppl": {"alias": "ppl", "perplexity,none": 12.0},
        },
        "higher_is_better": {
            "alpha": {"acc": True},
            "beta": {"exact_match": True},
            "gamma": {"acc": True},
            "ppl": {"perplexity": False},
        },
        "n-samples": {
            "alpha": {"original": 10, "effective": 4},
            "beta": {"original": 10, "effective": 4},
            "gamma": {"original": 10, "effective": 4},
        },
    }


def test_aggregate_is_the_weighted_mean_of_selection_metrics_on_fake_results() -> None:
    config = BenchmarkConfig(
        selection=[
            {"name": "alpha", "weight": 1},
            {"name": "beta", "weight": 3, "metric": "exact_match,strict-match"},
        ],
        report=["gamma"],
    )
    result = result_from_lm_eval(_fake_lm_eval_results(), config, wall_time_s=1.5)
    assert result.benchmark == pytest.approx((0.5 * 1 + 0.8 * 3) / 4)
    assert result.selection_scores == {"alpha": 0.5, "beta": 0.8}
    assert result.report_tasks == {"gamma": 0.1}
    assert result.per_task["alpha"].metric == "acc,none"
    assert result.per_task["alpha"].metrics == {"acc,none": 0.5, "acc_stderr,none": 0.1}
    assert result.per_task["gamma"].weight is None
    assert result.per_task["beta"].n_samples == 4
    assert result.wall_time_s == 1.5


def test_aggregate_refuses_bad_metrics_on_fake_results() -> None:
    fake = _fake_lm_eval_results()
    ambiguous = BenchmarkConfig(selection=[{"name": "beta", "metric": "exact_match"}], report=[])
    with pytest.raises(BenchmarkConfigError, match="ambiguous"):
        result_from_lm_eval(fake, ambiguous)
    missing = BenchmarkConfig(selection=[{"name": "alpha", "metric": "f1"}], report=[])
    with pytest.raises(BenchmarkConfigError, match="has no metric 'f1'; it has acc,none"):
        result_from_lm_eval(fake, missing)
    lower = BenchmarkConfig(selection=["ppl"], report=[])
    with pytest.raises(BenchmarkConfigError, match="lower-is-better"):
        result_from_lm_eval(fake, lower)
    # A lower-is-better metric is fine on a report task: it is only reported.
    reported = BenchmarkConfig(selection=["alpha"], report=["ppl"])
    assert result_from_lm_eval(fake, reported).report_tasks == {"ppl": 12.0}
    absent = BenchmarkConfig(selection=["delta"], report=[])
    with pytest.raises(BenchmarkConfigError, match="no result for 'delta'"):
        result_from_lm_eval(fake, absent)


# --------------------------------------------------------------------------- shipped suite


def test_committed_task_data_is_up_to_date_and_held_out() -> None:
    assert stale_task_data() == []
    data = build_task_data()
    assert set(data) == set(SHIPPED_TASKS)
    for docs in data.values():
        for doc in docs:
            assert split_of(doc["question"]) == "heldout"
            assert expected_answer(doc["question"]) == str(doc["answer"])
    for doc in data["bai_facts_mc"]:
        assert parse_problem(doc["question"]) is None
        assert len(set(doc["choices"])) == len(doc["choices"]) == 4
        assert doc["choices"][doc["label"]] == f"answer {doc['answer']}"
        assert all(ANSWER_PATTERN.fullmatch(choice) for choice in doc["choices"])
    assert all(2 <= doc["steps"] <= 4 for doc in data["bai_arith_gen"])
    assert all(doc["steps"] == 5 for doc in data["bai_arith_long_gen"])


def test_shipped_yamls_use_relative_paths_and_render_absolute(tmp_path: Path) -> None:
    for source in TASKS_DIR.glob("*.yaml"):
        data_files = yaml.safe_load(source.read_text())["dataset_kwargs"]["data_files"]
        assert not Path(data_files["test"]).is_absolute()
    rendered = render_shipped_tasks(tmp_path)
    assert {path.stem for path in rendered} == set(SHIPPED_TASKS)
    for path in rendered:
        data_file = Path(yaml.safe_load(path.read_text())["dataset_kwargs"]["data_files"]["test"])
        assert data_file.is_absolute() and data_file.is_file()
        assert data_file.parent == TASKS_DIR


def test_importing_evaluators_stays_light_and_goes_offline_at_use() -> None:
    code = (
        "import os, sys, evaluators, evaluators.benchmarks\n"
        "assert 'lm_eval' not in sys.modules and 'datasets' not in sys.modules\n"
        "assert os.environ['HF_HUB_OFFLINE'] == '0' and 'HF_DATASETS_OFFLINE' not in os.environ\n"
        "evaluators.benchmarks._prepare_environment()\n"
        "assert os.environ['HF_DATASETS_OFFLINE'] == os.environ['HF_HUB_OFFLINE'] == '1'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "0"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


def test_offline_switch_reaches_an_already_imported_datasets() -> None:
    code = (
        "import datasets, huggingface_hub.constants as hub\n"
        "assert not datasets.config.HF_HUB_OFFLINE\n"
        "from evaluators._offline import force_offline\n"
        "force_offline()\n"
        "assert datasets.config.HF_HUB_OFFLINE and hub.HF_HUB_OFFLINE\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PATH": "/usr/bin"})


# --------------------------------------------------------------------------- task errors


def test_malformed_yaml_in_include_path_is_a_clear_error(tmp_path: Path, tokenizer) -> None:
    write_task_yaml(tmp_path, "broken", "task: broken\ndoc_to_text: [unclosed\n")
    config = _small(selection=["bai_facts_mc"], report=[], include_path=[tmp_path])
    with pytest.raises(MalformedTaskError, match=r"broken\.yaml is malformed"):
        BenchmarkRunner(config, tokenizer)


def test_invalid_task_config_is_a_clear_error(tmp_path: Path, tokenizer) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text(json.dumps({"question": "what is 1 plus 1 ?", "answer": 2}) + "\n")
    body = user_task_body("my_bad", data).replace("output_type: generate_until", "output_type: x")
    write_task_yaml(tmp_path / "tasks", "my_bad", body)
    config = _small(selection=["my_bad"], report=[], include_path=[tmp_path / "tasks"])
    with pytest.raises(MalformedTaskError, match=r"'my_bad' .*my_bad\.yaml.*output_type"):
        BenchmarkRunner(config, tokenizer)


def test_missing_include_path_is_a_clear_error(tmp_path: Path, tokenizer) -> None:
    config = _small(include_path=[tmp_path / "nowhere"])
    with pytest.raises(BenchmarkConfigError, match="is not a directory"):
        BenchmarkRunner(config, tokenizer)


def test_missing_local_data_fails_fast(tmp_path: Path, tokenizer, no_network) -> None:
    write_task_yaml(tmp_path, "my_gone", user_task_body("my_gone", tmp_path / "gone.jsonl"))
    config = _small(selection=["my_gone"], report=[], include_path=[tmp_path])
    with pytest.raises(TaskDataUnavailableError, match="'my_gone' is not available"):
        BenchmarkRunner(config, tokenizer)


def test_unknown_metric_fails_before_scoring(tokenizer) -> None:
    config = _small(selection=[{"name": "bai_facts_mc", "metric": "f1"}], report=[])
    with pytest.raises(BenchmarkConfigError, match="has no metric 'f1'; it has acc,none"):
        BenchmarkRunner(config, tokenizer)


# --------------------------------------------------------------------------- tiny-model runs


def test_scores_a_tiny_model_offline(tiny_dirs, tokenizer, no_network) -> None:
    model = _load(tiny_dirs[0]).train()
    config = _small(
        selection=["bai_facts_mc", {"name": "bai_arith_gen", "weight": 2}], max_gen_toks=32
    )
    result = evaluate_benchmarks(model, tokenizer, config)

    assert list(result.per_task) == ["bai_facts_mc", "bai_arith_gen", "bai_arith_long_gen"]
    for task in result.per_task.values():
        assert task.n_samples == LIMIT
        assert 0.0 <= task.score <= 1.0
        assert task.metric == SHIPPED_TASKS[task.name].metric
    mc, gen = result.per_task["bai_facts_mc"], result.per_task["bai_arith_gen"]
    assert result.benchmark == pytest.approx((mc.score + 2 * gen.score) / 3)
    long_gen = result.per_task["bai_arith_long_gen"]
    assert result.report_tasks == {"bai_arith_long_gen": long_gen.score}
    assert result.wall_time_s > 0
    assert model.training, "the caller's train/eval mode is restored"


def test_runner_reuse_gives_the_same_scores_as_fresh_runs(tiny_dirs, tokenizer) -> None:
    config = _small(selection=["bai_facts_mc"], report=[])
    model_a, model_b = _load(tiny_dirs[0]), _load(tiny_dirs[1])
    runner = BenchmarkRunner(config, tokenizer)
    first_a = runner.score(model_a)
    scored_b = runner.score(model_b)
    again_a = runner.score(model_a)
    fresh_b = evaluate_benchmarks(model_b, tokenizer, config)

    assert again_a.per_task == first_a.per_task
    assert scored_b.per_task == fresh_b.per_task
    # Different weights are not answered from a cache: the log-likelihood choices differ.
    with torch.no_grad():
        assert not torch.equal(model_a.lm_head.weight, model_b.lm_head.weight)


def test_scoring_leaves_the_callers_random_streams_alone(tiny_dirs, tokenizer) -> None:
    model = _load(tiny_dirs[0])
    runner = BenchmarkRunner(_small(selection=["bai_facts_mc"], report=[]), tokenizer)
    torch.manual_seed(7)
    random.seed(7)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(7)
    random.seed(7)
    runner.score(model)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]


def test_generation_budget_beyond_the_context_is_refused(tiny_dirs, tokenizer) -> None:
    runner = BenchmarkRunner(
        _small(selection=["bai_arith_gen"], report=[], max_gen_toks=500), tokenizer
    )
    with pytest.raises(BenchmarkConfigError, match="generates up to 500 tokens"):
        runner.score(_load(tiny_dirs[0]))


def test_user_task_directory_runs(tmp_path: Path, tiny_dirs, tokenizer, no_network) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"what is {n} plus 1 ?", "answer": n + 1}) + "\n"
            for n in range(5)
        )
    )
    write_task_yaml(tmp_path / "tasks", "my_task", user_task_body("my_task", data))
    config = _small(
        selection=["my_task"], report=["bai_facts_mc"], include_path=[tmp_path / "tasks"]
    )
    result = evaluate_benchmarks(_load(tiny_dirs[0]), tokenizer, config)
    assert result.per_task["my_task"].metric == "exact_match,none"
    assert result.per_task["my_task"].n_samples == LIMIT
    assert result.benchmark == result.per_task["my_task"].score


def test_evaluate_checkpoint_loads_model_and_tokenizer(tiny_dirs, tmp_path: Path) -> None:
    config = _small(selection=["bai_facts_mc"], report=[])
    result = evaluate_checkpoint(tiny_dirs[0], config)
    assert result.per_task["bai_facts_mc"].n_samples == LIMIT
    with pytest.raises(ModelLoadError, match="does not exist"):
        evaluate_checkpoint(tmp_path / "missing", config)
    assert issubclass(ModelLoadError, EvaluatorError)


def test_a_kept_wrapper_follows_weights_swapped_in_place(tiny_dirs, tokenizer) -> None:
    runner = BenchmarkRunner(_small(selection=["bai_facts_mc"], report=[]), tokenizer)
    model_a, model_b = _load(tiny_dirs[0]), _load(tiny_dirs[1])
    expected_a, expected_b = runner.score(model_a), runner.score(model_b)
    assert expected_a.per_task != expected_b.per_task, "the two tiny models must score apart"

    actor = _load(tiny_dirs[0])
    wrapper = runner.wrap(actor)
    assert runner.score(wrapper).per_task == expected_a.per_task
    actor.load_state_dict(model_b.state_dict())
    actor.train()  # e.g. trained in place in between: scoring must still run in eval mode
    assert runner.score(wrapper).per_task == expected_b.per_task
    assert actor.training
