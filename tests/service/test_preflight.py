"""The pre-flight through REST (422, nothing queued) and ``bai-sweep run`` (exit 2, nothing
created, Ray never imported), and the nested-path and ``!function`` refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from sweeps.preflight import PreflightError, check_spec
from sweeps.spec import SweepSpec
from tests.service.conftest import ModelRoot

REPO = Path(__file__).resolve().parents[2]


def _queued(client: httpx.Client) -> int:
    return client.get("/sweeps", params={"limit": 1}).json()["total"]


def _refused(client: httpx.Client, spec: dict, *needles: str) -> str:
    before = _queued(client)
    response = client.post("/sweeps", json=spec)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "\n" not in detail
    for needle in needles:
        assert needle in detail, detail
    assert _queued(client) == before
    return detail


def _with(spec: dict, section: str, **values: object) -> dict:
    return {**spec, section: {**spec.get(section, {}), **values}}


@pytest.fixture(scope="module")
def odd_checkpoints(model_root: ModelRoot) -> dict[str, Path]:
    """Broken variants of the root's checkpoints (inside the root)."""
    root = model_root.root / "odd"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    two_labels = shutil.copytree(model_root.reward, root / "reward-two-labels")
    config = json.loads((two_labels / "config.json").read_text())
    config.update(num_labels=2, id2label={"0": "a", "1": "b"}, label2id={"a": 0, "b": 1})
    (two_labels / "config.json").write_text(json.dumps(config))
    escaping = shutil.copytree(model_root.sft_b, root / "sft-escaping-index")
    weights = escaping / "model.safetensors"
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "../../../outside/secret.bin"}}
    (escaping / "model.safetensors.index.json").write_text(json.dumps(index))
    weights.rename(escaping / "model-00001-of-00001.safetensors")
    empty = root / "empty.jsonl"
    empty.write_text("\n")
    few = root / "one.jsonl"
    few.write_text('{"prompt": "what is 1 plus 1?"}\n')
    hooks = root / "hook-tasks"
    hooks.mkdir()
    (hooks / "hooked.yaml").write_text(
        "task: hooked\ndataset_path: json\nprocess_docs: !function utils.process_docs\n"
    )
    return {
        "two_labels": two_labels,
        "escaping": escaping,
        "empty": empty,
        "few": few,
        "hooks": hooks,
    }


@pytest.mark.parametrize(
    ("section", "values", "needles"),
    [
        ("probe", {"backend": "nope"}, ("probe.backend", "trl-ppo")),
        ("probe", {"batch_size": 64}, ("probe.batch_size", "8 prompts", "batch_size <= 8")),
        ("probe", {"response_length": 100_000}, ("probe.response_length", "128 positions")),
        ("probe", {"device": "cuda"}, ("probe.device", "gpus_per_trial")),
        ("probe", {"steps": 1_000_000_000}, ("probe.steps", "less than or equal")),
        ("benchmarks", {"device": "cuda"}, ("benchmarks.device",)),
        ("benchmarks", {"limit": 10**12}, ("benchmarks.limit",)),
        (
            "benchmarks",
            {"max_gen_toks": 120},
            ("benchmarks.max_gen_toks", "120 tokens", "128 positions", "max_gen_toks <="),
        ),
    ],
)
def test_probe_and_benchmark_refusals(
    open_api: httpx.Client, model_root: ModelRoot, section: str, values: dict, needles: tuple
) -> None:
    _refused(open_api, _with(model_root.spec(), section, **values), *needles)


def test_task_generation_budget_refused(open_api: httpx.Client, model_root: ModelRoot) -> None:
    """Without ``max_gen_toks`` the task YAML's budget counts (bai_arith_gen: 192 tokens)."""
    spec = {**model_root.spec(), "benchmarks": {"limit": 2}}
    _refused(open_api, spec, "benchmarks.max_gen_toks", "bai_arith_gen", "192 tokens")


def test_cuda_refused_where_there_is_none(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = _with(model_root.spec(), "probe", device="cuda")
    spec["resources"] = {"gpus_per_trial": 1}
    _refused(open_api, spec, "probe.device", "no CUDA device")


def test_model_refusals(
    open_api: httpx.Client, model_root: ModelRoot, odd_checkpoints: dict[str, Path]
) -> None:
    spec = model_root.spec()
    two_labels = {**spec["models"], "reward": str(odd_checkpoints["two_labels"])}
    _refused(open_api, {**spec, "models": two_labels}, "models.reward", "2 labels", "num_labels=1")
    not_a_classifier = {**spec["models"], "reward": str(model_root.base)}
    _refused(open_api, {**spec, "models": not_a_classifier}, "models.reward", "sequence-class")
    empty = {**spec["models"], "prompts": str(odd_checkpoints["empty"])}
    _refused(open_api, {**spec, "models": empty}, "models.prompts", "non-empty")
    few = {**spec["models"], "prompts": str(odd_checkpoints["few"])}
    _refused(open_api, {**spec, "models": few}, "probe.batch_size", "1 prompts")
    escaping = {**spec["models"], "sft": [str(model_root.sft_a), str(odd_checkpoints["escaping"])]}
    _refused(open_api, {**spec, "models": escaping}, "models.sft[1]", "outside the checkpoint")


def test_tokenizer_must_fit_the_embeddings(model_root: ModelRoot, tmp_path: Path) -> None:
    from sweeps.preflight import check_tokenizer, read_actor_facts

    small = shutil.copytree(model_root.base, tmp_path / "small-vocab")
    config = json.loads((small / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**config, "vocab_size": 8}))
    facts = read_actor_facts(small, "models.base")
    with pytest.raises(PreflightError, match=r"models\.base: the tokenizer .* 8 embedding rows"):
        check_tokenizer(facts, "models.base")
    (small / "tokenizer.json").write_text("{not json")
    with pytest.raises(PreflightError, match=r"models\.base: cannot read .*tokenizer\.json"):
        read_actor_facts(small, "models.base")


def test_function_hooks_need_trust_remote_code(
    model_root: ModelRoot, odd_checkpoints: dict[str, Path], open_api: httpx.Client
) -> None:
    benchmarks = {
        "selection": ["hooked"],
        "report": [],
        "include_path": str(odd_checkpoints["hooks"]),
    }
    spec = {**model_root.spec(), "benchmarks": benchmarks}
    _refused(open_api, spec, "benchmarks.include_path[0]", "!function", "trust_remote_code")
    trusted = SweepSpec.model_validate(spec)
    check_spec(trusted, trust_remote_code=True, builtin_tasks=False)


def test_list_sizes_are_bounded(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec()
    many = {**spec["models"], "sft": [str(model_root.sft_a)] * 17}
    response = open_api.post("/sweeps", json={**spec, "models": many})
    assert response.status_code == 422
    assert "models.sft" in response.json()["detail"]
    seeds = {"seed_points": [{"alpha": 0.5}] * 257}
    response = open_api.post("/sweeps", json={**spec, "search": seeds})
    assert response.status_code == 422


def test_valid_spec_passes(model_root: ModelRoot) -> None:
    check_spec(SweepSpec.model_validate(model_root.spec()), builtin_tasks=False)


# --------------------------------------------------------------------------- bai-sweep run


@pytest.mark.parametrize(
    ("section", "values", "field"),
    [
        ("probe", {"response_length": 100_000}, "probe.response_length"),
        ("benchmarks", {"max_gen_toks": 1000}, "benchmarks.max_gen_toks"),
        # A forecast objective on the spec's 2-update probe: no curve could ever be fitted.
        ("objectives", ["stability", "reward_asymptote"], "probe.steps: 2 updates are too few"),
    ],
)
def test_run_refuses_before_creating_anything(
    tmp_path: Path, model_root: ModelRoot, section: str, values: dict | list, field: str
) -> None:
    spec = (
        {**model_root.spec(), section: values}
        if isinstance(values, list)
        else _with(model_root.spec(), section, **values)
    )
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    data_dir = tmp_path / "data"
    code = (
        "import sys\n"
        "from service.cli import main\n"
        f"sys.argv = ['bai-sweep', 'run', {str(spec_file)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert 'ray' not in sys.modules, 'Ray was imported'\n"
        "    raise\n"
    )
    env = {**os.environ, "BAI_SWEEP_DATA_DIR": str(data_dir), "BAI_SWEEP_DATABASE_URL": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_preflight_error_is_a_spec_error() -> None:
    from sweeps.exceptions import InvalidSpecError

    assert issubclass(PreflightError, InvalidSpecError)


# --------------------------------------------------------------------------- demo world


@pytest.mark.slow
def test_spec_without_probe_section_runs_on_the_demo_world(demo_world, tmp_path: Path) -> None:
    """The probe's defaults fit the demo world: a one-trial sweep runs with them."""
    spec = {
        "name": "probe-defaults",
        "models": {
            "base": str(demo_world.base),
            "sft": [str(path) for path in demo_world.sfts],
            "reward_rule": demo_world.reward_rule,
            "prompts": str(demo_world.prompts),
        },
        "search": {"n_trials": 1, "seed_points": [{"alpha": 0.5}]},
        "benchmarks": {"selection": ["bai_facts_mc"], "report": [], "limit": 8},
    }
    check_spec(SweepSpec.parse(spec))
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "BAI_SWEEP_DATA_DIR": str(tmp_path / "data")}
    bai_sweep = str(Path(sys.executable).with_name("bai-sweep"))
    result = subprocess.run(
        [bai_sweep, "run", str(spec_file), "--compare-to", "none"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
