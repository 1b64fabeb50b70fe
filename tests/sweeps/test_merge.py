"""The BAI merge engine on tiny random checkpoints: exactness, output format, errors, in memory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import xxhash
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sweeps._checkpoint_io import INDEX_FILE
from sweeps.exceptions import (
    CheckpointNotFoundError,
    IncompatibleCheckpointsError,
    InvalidCheckpointError,
    InvalidRatiosError,
    MergeOptionError,
    SweepsError,
)
from sweeps.merge import (
    bai_coefficients,
    load_merge_inputs,
    merge_bai,
    mergekit_yaml,
    parse_size,
    preflight,
    validate_ratios,
)
from tests.tiny_models import make_checkpoint, make_family

# (architecture, input dtype, tied embeddings, input shard size)
FAMILIES = {
    "llama-bf16-untied-single": ("llama", torch.bfloat16, False, None),
    "qwen2-fp16-tied-sharded": ("qwen2", torch.float16, True, "20KB"),
    "llama-fp32-tied-sharded": ("llama", torch.float32, True, "40KB"),
}


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Path]]]:
    root = tmp_path_factory.mktemp("families")
    return {
        key: make_family(
            root / key, arch=arch, dtype=dtype, tie_word_embeddings=tied, max_shard_size=shard
        )
        for key, (arch, dtype, tied, shard) in FAMILIES.items()
    }


@pytest.fixture(scope="module")
def llama(families: dict[str, tuple[Path, list[Path]]]) -> tuple[Path, list[Path]]:
    return families["llama-bf16-untied-single"]


def _load_all(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors |= load_file(file)
    return tensors


def _ulp(dtype: torch.dtype, values: torch.Tensor) -> torch.Tensor:
    """One unit in the last place of ``dtype`` at ``values`` (float64), subnormals included."""
    info = torch.finfo(dtype)
    magnitude = values.abs().clamp_min(info.tiny)
    _, exponent = torch.frexp(magnitude)
    return info.eps * torch.pow(2.0, exponent.to(torch.float64) - 1)


def _assert_matches_reference(out: Path, base: Path, sfts: list[Path], coefficients, dtype):
    inputs = [_load_all(path) for path in (base, *sfts)]
    merged = _load_all(out)
    assert set(merged) == set(inputs[0])
    for name, tensor in merged.items():
        assert tensor.dtype == dtype, name
        terms = [
            c * inp[name].to(torch.float64) for c, inp in zip(coefficients, inputs, strict=True)
        ]
        reference = sum(terms)
        # One ULP of the output dtype, plus the bound of the accumulation (float32 for 16-bit
        # outputs, float64 for float32 ones), which only matters where the terms nearly cancel.
        accumulate = torch.float64 if dtype == torch.float32 else torch.float32
        accumulation = (len(terms) + 1) * torch.finfo(accumulate).eps * sum(map(torch.abs, terms))
        error = (tensor.to(torch.float64) - reference).abs()
        assert bool((error <= _ulp(dtype, reference) + accumulation).all()), name
        # Away from cancellation, the result is the reference rounded to the output dtype.
        close = (error <= _ulp(dtype, reference)).double().mean().item()
        assert close > 0.999, name


@pytest.mark.parametrize("key", list(FAMILIES))
def test_merge_equals_float64_reference_within_one_ulp(families, key, tmp_path):
    base, sfts = families[key]
    weights, alpha = [0.3, 0.7], 0.4
    out = merge_bai(base=base, sfts=sfts, weights=weights, alpha=alpha, out=tmp_path / "bai")
    _assert_matches_reference(out, base, sfts, bai_coefficients(weights, alpha), FAMILIES[key][1])


def test_dtype_override_and_single_sft(llama, tmp_path):
    base, sfts = llama
    out = merge_bai(
        base=base, sfts=sfts[:1], weights=[1.0], alpha=0.25, out=tmp_path / "o", dtype="float32"
    )
    _assert_matches_reference(out, base, sfts[:1], [0.25, 0.75], torch.float32)
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"


def test_alpha_one_reproduces_the_base_exactly(llama, tmp_path):
    base, sfts = llama
    out = merge_bai(base=base, sfts=sfts, weights=[0.5, 0.5], alpha=1.0, out=tmp_path / "o")
    merged, original = _load_all(out), _load_all(base)
    assert all(torch.equal(merged[name], original[name]) for name in original)


@pytest.mark.parametrize("key", ["llama-bf16-untied-single", "qwen2-fp16-tied-sharded"])
def test_output_is_a_complete_checkpoint_that_loads_and_generates(families, key, tmp_path):
    base, sfts = families[key]
    export = tmp_path / "bai.yaml"
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=[0.5, 0.5],
        alpha=0.3,
        out=tmp_path / "bai",
        export_mergekit=export,
    )
    for name in ("config.json", "generation_config.json", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("12+7=", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 4)
    assert model.config.tie_word_embeddings == FAMILIES[key][2]

    recipe = json.loads((out / "bai_recipe.json").read_text())
    assert recipe["weights"] == [0.5, 0.5] and recipe["alpha"] == 0.3
    assert recipe["coefficients"] == bai_coefficients([0.5, 0.5], 0.3)
    assert recipe["dtype"] == str(FAMILIES[key][1]).removeprefix("torch.")
    assert recipe["bai_sweep_version"]
    assert recipe["base"]["path"] == str(base.resolve())
    for entry, path in zip(recipe["sfts"], sfts, strict=True):
        assert entry["path"] == str(path.resolve())
        assert entry["xxh3_128"] == {
            file.name: xxhash.xxh3_128(file.read_bytes()).hexdigest()
            for file in sorted(path.glob("*.safetensors"))
        }
    assert "alpha = 0.3" in (out / "README.md").read_text()

    stages = list(yaml.safe_load_all(export.read_text()))
    assert [stage["merge_method"] for stage in stages] == ["linear", "linear"]
    assert [m["parameters"]["weight"] for m in stages[0]["models"]] == [0.5, 0.5]
    assert stages[1]["models"][1] == {"model": "bai-sft", "parameters": {"weight": 0.7}}


def test_sharded_output_has_a_correct_index(llama, tmp_path):
    base, sfts = llama
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=[0.5, 0.5],
        alpha=0.5,
        out=tmp_path / "bai",
        max_shard_size="12KB",
    )
    index = json.loads((out / INDEX_FILE).read_text())
    shard_files = sorted(out.glob("*.safetensors"))
    assert len(shard_files) > 2
    assert not (out / "model.safetensors").exists()
    assert sorted(set(index["weight_map"].values())) == [file.name for file in shard_files]
    assert shard_files[0].name == f"model-00001-of-{len(shard_files):05d}.safetensors"
    total = 0
    for file in shard_files:
        with safe_open(str(file), framework="pt") as handle:
            names = set(handle.keys())
            tensors = [handle.get_tensor(name) for name in names]
        assert names == {n for n, f in index["weight_map"].items() if f == file.name}
        size = sum(t.numel() * t.element_size() for t in tensors)
        assert size <= 12_000 or len(tensors) == 1
        total += size
    assert index["metadata"]["total_size"] == total
    assert set(index["weight_map"]) == set(_load_all(base))


@pytest.mark.parametrize("key", list(FAMILIES))
def test_in_memory_actors_equal_the_on_disk_merge(families, key, tmp_path):
    base, sfts = families[key]
    inputs = load_merge_inputs(base, sfts)
    ids = torch.tensor([[1, 7, 9, 11, 13]])
    actors = []
    for weights, alpha in (([0.5, 0.5], 0.3), ([0.9, 0.1], 0.7)):
        out = merge_bai(
            base=base, sfts=sfts, weights=weights, alpha=alpha, out=tmp_path / f"{alpha}"
        )
        loaded = AutoModelForCausalLM.from_pretrained(out)
        actor = inputs.build_actor(weights, alpha)
        expected, got = loaded.state_dict(), actor.state_dict()
        assert set(expected) == set(got)
        for name in expected:
            assert torch.equal(expected[name], got[name]), name
        assert actor.dtype == loaded.dtype and not actor.training
        with torch.no_grad():
            assert torch.equal(actor(ids).logits, loaded(ids).logits)
        if FAMILIES[key][2]:
            assert actor.lm_head.weight is actor.get_input_embeddings().weight
        actors.append(actor)
    first, second = (dict(actor.named_parameters()) for actor in actors)
    assert all(first[name].data_ptr() != second[name].data_ptr() for name in first)


def test_actor_dtype_override_and_invalid_ratios(llama):
    inputs = load_merge_inputs(*llama)
    actor = inputs.build_actor([0.5, 0.5], 0.5, dtype=torch.float32)
    assert actor.dtype == torch.float32
    with pytest.raises(InvalidRatiosError):
        inputs.build_actor([0.5, 0.6], 0.5)


def test_preflight_reads_headers_only(llama, tmp_path):
    base, sfts = llama
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for file in sfts[0].iterdir():
        data = file.read_bytes()
        (truncated / file.name).write_bytes(
            data[: len(data) // 2] if file.suffix == ".safetensors" else data
        )
    plan = preflight(base, [truncated, sfts[1]])
    assert plan.architecture == "LlamaForCausalLM" and plan.vocab_size == 64
    assert plan.num_parameters == sum(t.numel() for t in _load_all(base).values())


def test_ratio_validation():
    assert validate_ratios([1, 3], 0.5, 2, normalize=True) == ([0.25, 0.75], 0.5)
    assert validate_ratios([0.2, 0.8 + 5e-7], 0.0, 2)[1] == 0.0
    assert bai_coefficients([0.25, 0.75], 0.2) == [0.2, 0.2, 0.6000000000000001]
    assert math.isclose(sum(bai_coefficients([0.1, 0.2, 0.7], 0.3)), 1.0)
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2MiB") == 2 * 2**20


def _mismatched(tmp_path: Path, **kwargs) -> Path:
    return make_checkpoint(tmp_path / "odd", seed=9, dtype=torch.bfloat16, **kwargs)


BAD_INPUTS = {
    "weights do not sum to one": (
        lambda tmp, base, sfts: {"weights": [0.5, 0.6]},
        InvalidRatiosError,
        "weights sum to 1.1",
    ),
    "negative weight": (
        lambda tmp, base, sfts: {"weights": [1.5, -0.5]},
        InvalidRatiosError,
        "weight 1 is -0.5",
    ),
    "wrong number of weights": (
        lambda tmp, base, sfts: {"weights": [1.0]},
        InvalidRatiosError,
        "got 1 weights for 2 SFT checkpoints",
    ),
    "alpha above one": (lambda tmp, base, sfts: {"alpha": 1.5}, InvalidRatiosError, "alpha is 1.5"),
    "alpha below zero": (lambda tmp, base, sfts: {"alpha": -0.1}, InvalidRatiosError, "alpha"),
    "missing directory": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], tmp / "nope"]},
        CheckpointNotFoundError,
        "sft[1] checkpoint",
    ),
    "no weights in directory": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], _config_only(tmp, base)]},
        CheckpointNotFoundError,
        "has no model.safetensors",
    ),
    "shape mismatch": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], _mismatched(tmp, intermediate_size=96)]},
        IncompatibleCheckpointsError,
        "tensor 'model.layers.0.mlp.down_proj.weight' has shape [32, 64] vs [32, 96]",
    ),
    "architecture mismatch": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], _mismatched(tmp, arch="qwen2")]},
        IncompatibleCheckpointsError,
        "architecture mismatch: ['LlamaForCausalLM'] vs ['Qwen2ForCausalLM']",
    ),
    "vocab mismatch without a tokenizer": (
        lambda tmp, base, sfts: {
            "sfts": [sfts[0], _mismatched(tmp, vocab_size=72, with_tokenizer=False)]
        },
        IncompatibleCheckpointsError,
        "vocabulary sizes differ (64 vs 64 vs 72), but sft[1]",
    ),
    "unknown tokenizer source": (
        lambda tmp, base, sfts: {"tokenizer_source": str(tmp)},
        MergeOptionError,
        "is neither 'base', 'union' nor one of the merged checkpoints",
    ),
    "tied vs untied embeddings": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], _mismatched(tmp, tie_word_embeddings=True)]},
        IncompatibleCheckpointsError,
        "tied embeddings setting mismatch",
    ),
    "missing tensor": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], _mismatched(tmp, num_layers=3)]},
        IncompatibleCheckpointsError,
        "tensor 'model.layers.2.",
    ),
    "unsupported dtype": (lambda tmp, base, sfts: {"dtype": "int8"}, MergeOptionError, "int8"),
    "bad shard size": (
        lambda tmp, base, sfts: {"max_shard_size": "lots"},
        MergeOptionError,
        "invalid shard size 'lots'",
    ),
    "cuda unavailable": (
        lambda tmp, base, sfts: {"device": "cuda"},
        MergeOptionError,
        "CUDA is not available",
    ),
    "corrupt header": (
        lambda tmp, base, sfts: {"sfts": [sfts[0], _corrupt(tmp, sfts[1])]},
        InvalidCheckpointError,
        "is not a readable safetensors file",
    ),
}


def _config_only(tmp: Path, base: Path) -> Path:
    path = tmp / "config-only"
    path.mkdir()
    (path / "config.json").write_text((base / "config.json").read_text())
    return path


def _corrupt(tmp: Path, source: Path) -> Path:
    path = tmp / "corrupt"
    path.mkdir()
    (path / "config.json").write_text((source / "config.json").read_text())
    (path / "model.safetensors").write_bytes(b"\xff" * 16)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_clear_error_and_no_output(llama, tmp_path, case):
    base, sfts = llama
    make_arguments, error_type, message = BAD_INPUTS[case]
    work = tmp_path / "work"
    work.mkdir()
    arguments = {"base": base, "sfts": sfts, "weights": [0.5, 0.5], "alpha": 0.3}
    arguments |= make_arguments(tmp_path, base, sfts)
    out = work / "bai"
    with pytest.raises(error_type) as caught:
        merge_bai(out=out, **arguments)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(caught.value, SweepsError)
    assert list(work.iterdir()) == []


def test_failure_during_the_merge_leaves_nothing(llama, tmp_path):
    base, sfts = llama
    work = tmp_path / "work"
    work.mkdir()

    def explode(name: str, nbytes: int) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        merge_bai(
            base=base, sfts=sfts, weights=[0.5, 0.5], alpha=0.3, out=work / "o", on_tensor=explode
        )
    assert list(work.iterdir()) == []


def test_existing_output_is_refused_then_replaced_with_overwrite(llama, tmp_path):
    base, sfts = llama
    out = tmp_path / "bai"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(MergeOptionError, match="already exists"):
        merge_bai(base=base, sfts=sfts, weights=[0.5, 0.5], alpha=0.3, out=out)
    merge_bai(base=base, sfts=sfts, weights=[0.5, 0.5], alpha=0.3, out=out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bai"]


def test_tokenizer_from_another_directory(llama, tmp_path):
    base, sfts = llama
    other = tmp_path / "tok"
    other.mkdir()
    (other / "tokenizer.json").write_text((base / "tokenizer.json").read_text())
    (other / "tokenizer_config.json").write_text('{"model_max_length": 7}')
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=[0.5, 0.5],
        alpha=0.3,
        out=tmp_path / "o",
        tokenizer_from=other,
    )
    assert json.loads((out / "tokenizer_config.json").read_text()) == {"model_max_length": 7}
    with pytest.raises(CheckpointNotFoundError, match="holds no tokenizer files"):
        merge_bai(
            base=base,
            sfts=sfts,
            weights=[0.5, 0.5],
            alpha=0.3,
            out=tmp_path / "p",
            tokenizer_from=sfts[0] / "x",
        )


def test_mergekit_yaml_keeps_the_intermediate_in_float32(llama):
    plan = preflight(*llama)
    stages = list(yaml.safe_load_all(mergekit_yaml(plan, [0.2, 0.8], 0.6, "BF16")))
    assert stages[0]["name"] == "bai-sft" and stages[0]["out_dtype"] == "float32"
    assert stages[1]["out_dtype"] == "bfloat16"
    assert stages[1]["models"][0]["parameters"]["weight"] == 0.6


def test_tensors_spanning_many_column_blocks(families, tmp_path, monkeypatch):
    import sweeps.merge

    monkeypatch.setattr(sweeps.merge, "BLOCK_ELEMENTS", 100)  # 100 divides no tensor size here
    base, sfts = families["qwen2-fp16-tied-sharded"]
    weights, alpha = [0.6, 0.4], 0.2
    out = merge_bai(base=base, sfts=sfts, weights=weights, alpha=alpha, out=tmp_path / "bai")
    _assert_matches_reference(out, base, sfts, bai_coefficients(weights, alpha), torch.float16)
    on_disk = _load_all(out)
    in_memory = load_merge_inputs(base, sfts).merged_state_dict(weights, alpha)
    assert all(torch.equal(on_disk[name], in_memory[name]) for name in on_disk)
