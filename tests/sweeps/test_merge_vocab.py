"""Merges of checkpoints whose vocabularies differ (``tokenizer_source``): tiny models, one of
which added reasoning tokens, against a float64 reference of the token-matched merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from sweeps.exceptions import IncompatibleCheckpointsError
from sweeps.merge import bai_coefficients, load_merge_inputs, merge_bai, preflight
from tests.sweeps.test_merge import _load_all, _ulp
from tests.tiny_models import VOCAB, make_checkpoint, tiny_tokenizer

ADDED = ("<think>", "</think>")
BASE_TOKENS = len(VOCAB)
VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


def _with_added_tokens(path: Path) -> Path:
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": list(ADDED)})
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Base and instruct with the 49-token vocabulary; a reasoning SFT that added two tokens."""
    root = tmp_path_factory.mktemp("vocab")
    common = {"dtype": torch.bfloat16, "tie_word_embeddings": False}
    base = make_checkpoint(root / "base", seed=0, vocab_size=BASE_TOKENS, **common)
    instruct = make_checkpoint(root / "instruct", seed=1, vocab_size=BASE_TOKENS, **common)
    reasoning = make_checkpoint(
        root / "reasoning", seed=2, vocab_size=BASE_TOKENS + len(ADDED), **common
    )
    return base, [instruct, _with_added_tokens(reasoning)]


def _reference(
    paths: list[Path], coefficients: list[float], out_tokens: list[str]
) -> dict[str, torch.Tensor]:
    """The token-matched merge in float64: a token's row over the models that have it."""
    inputs = [_load_all(path) for path in paths]
    vocabs = [AutoTokenizer.from_pretrained(path).get_vocab() for path in paths]
    reference = {}
    for name in inputs[0]:
        if name not in VOCAB_TENSORS:
            reference[name] = sum(
                c * t[name].double() for c, t in zip(coefficients, inputs, strict=True)
            )
            continue
        rows = []
        for token in out_tokens:
            have = [k for k, vocab in enumerate(vocabs) if token in vocab]
            total = sum(coefficients[k] for k in have)
            terms = [
                coefficients[k] / total * inputs[k][name][vocabs[k][token]].double() for k in have
            ]
            rows.append(sum(terms))
        reference[name] = torch.stack(rows)
    return reference


def _assert_within_one_ulp(out: Path, reference: dict[str, torch.Tensor]) -> None:
    merged = _load_all(out)
    assert set(merged) == set(reference)
    for name, tensor in merged.items():
        assert tensor.shape == reference[name].shape, name
        error = (tensor.double() - reference[name]).abs()
        # One bf16 ULP plus the float32 accumulation bound.
        slack = 4 * torch.finfo(torch.float32).eps * reference[name].abs()
        assert bool((error <= _ulp(torch.bfloat16, reference[name]) + slack).all()), name


def _tokens(tokenizer) -> list[str]:
    return [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]


def test_union_merge_gives_new_tokens_the_rows_of_the_models_that_have_them(family, tmp_path):
    base, sfts = family
    weights, alpha = [0.4, 0.6], 0.3
    export = tmp_path / "bai.yaml"
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=weights,
        alpha=alpha,
        out=tmp_path / "union",
        tokenizer_source="union",
        export_mergekit=export,
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokens = _tokens(tokenizer)
    assert tokens[:BASE_TOKENS] == list(VOCAB) and tokens[BASE_TOKENS:] == list(ADDED)
    assert tokenizer.convert_tokens_to_ids("<think>") == BASE_TOKENS
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == BASE_TOKENS + len(ADDED)
    coefficients = bai_coefficients(weights, alpha)
    _assert_within_one_ulp(out, _reference([base, *sfts], coefficients, tokens))
    # The added rows are the reasoning model's own (the only model that has the tokens).
    merged, reasoning = _load_all(out), _load_all(sfts[1])
    for name in VOCAB_TENSORS:
        assert torch.equal(merged[name][BASE_TOKENS:], reasoning[name][BASE_TOKENS:])
    recipe = json.loads((out / "bai_recipe.json").read_text())
    assert recipe["tokenizer_source"] == "union" and recipe["vocab_size"] == 51
    assert recipe["added_tokens"] == list(ADDED)
    assert recipe["added_token_sources"] == {token: ["sft[1]"] for token in ADDED}
    # The merged checkpoint loads and runs with its new tokens.
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = tokenizer("<think>1+1", return_tensors="pt")["input_ids"]
    assert int(ids.max()) >= BASE_TOKENS
    assert model(ids).logits.shape[-1] == BASE_TOKENS + len(ADDED)
    stages = list(yaml.safe_load_all(export.read_text()))
    assert [stage.get("tokenizer_source") for stage in stages] == ["union", "union"]
    assert stages[1]["models"][1]["model"] == stages[0]["name"]


@pytest.mark.parametrize("source", ["base", "reasoning"])
def test_base_and_named_sources(family, tmp_path, source):
    base, sfts = family
    named = str(sfts[1]) if source == "reasoning" else "base"
    weights, alpha = [0.5, 0.5], 0.5
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=weights,
        alpha=alpha,
        out=tmp_path / source,
        tokenizer_source=named,
    )
    tokens = _tokens(AutoTokenizer.from_pretrained(out))
    expected = [*VOCAB, *ADDED] if source == "reasoning" else list(VOCAB)
    assert tokens == expected
    coefficients = bai_coefficients(weights, alpha)
    _assert_within_one_ulp(out, _reference([base, *sfts], coefficients, tokens))


def test_in_memory_actor_with_union_vocabulary_equals_the_on_disk_merge(family, tmp_path):
    base, sfts = family
    inputs = load_merge_inputs(base, sfts, tokenizer_source="union")
    assert inputs.tokenizer is not None and len(inputs.tokenizer) == BASE_TOKENS + len(ADDED)
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=[0.3, 0.7],
        alpha=0.2,
        out=tmp_path / "disk",
        tokenizer_source="union",
    )
    actor = inputs.build_actor([0.3, 0.7], 0.2)
    expected = AutoModelForCausalLM.from_pretrained(out).state_dict()
    got = actor.state_dict()
    assert set(expected) == set(got)
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert actor.config.vocab_size == BASE_TOKENS + len(ADDED)


def test_alpha_one_takes_new_tokens_from_the_models_that_have_them(family, tmp_path):
    """All the weight on the base: tokens the base lacks fall back to the mean of the SFT
    models that define them (their BAI coefficients are all zero)."""
    base, sfts = family
    out = merge_bai(
        base=base,
        sfts=sfts,
        weights=[0.5, 0.5],
        alpha=1.0,
        out=tmp_path / "alpha1",
        tokenizer_source="union",
    )
    merged, original, reasoning = _load_all(out), _load_all(base), _load_all(sfts[1])
    for name in VOCAB_TENSORS:
        assert torch.equal(merged[name][:BASE_TOKENS], original[name])
        assert torch.equal(merged[name][BASE_TOKENS:], reasoning[name][BASE_TOKENS:])


def test_irreconcilable_vocabularies_are_refused(family, tmp_path):
    base, sfts = family
    other_shape = make_checkpoint(
        tmp_path / "wide", seed=5, vocab_size=BASE_TOKENS + 2, intermediate_size=96
    )
    _with_added_tokens(other_shape)
    with pytest.raises(IncompatibleCheckpointsError, match="has shape"):
        preflight(base, [sfts[0], other_shape], tokenizer_source="union")
    # A tokenizer with more tokens than the model has embedding rows.
    short = make_checkpoint(tmp_path / "short", seed=6, vocab_size=BASE_TOKENS)
    _with_added_tokens(short)
    with pytest.raises(IncompatibleCheckpointsError, match="has token id 50 but the model"):
        preflight(base, [sfts[0], short], tokenizer_source="union")
