"""The pre-flight of a reference model named by ``probe.length_reference``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluators._probe_types import ProbeConfig
from sweeps.preflight import PreflightError, check_length_reference, read_actor_facts
from sweeps.spec import SweepSpec
from tests.tiny_models import make_checkpoint


def test_a_reference_model_sharing_the_tokenizer_passes(demo_world: Any) -> None:
    actor = read_actor_facts(demo_world.base, "models.base")
    check_length_reference(ProbeConfig(length_reference=str(demo_world.sfts[-1])), actor)
    for keyword in ("parents", "initial"):
        assert ProbeConfig(length_reference=keyword).reference_model is None
        check_length_reference(ProbeConfig(length_reference=keyword), actor)


def test_unusable_reference_models_are_refused(demo_world: Any, tmp_path: Path) -> None:
    actor = read_actor_facts(demo_world.base, "models.base")

    def refused(path: Path) -> str:
        with pytest.raises(PreflightError) as error:
            check_length_reference(ProbeConfig(length_reference=str(path)), actor)
        message = str(error.value)
        assert message.startswith("probe.length_reference: ")
        return message

    assert "does not exist" in refused(tmp_path / "missing")
    other = make_checkpoint(tmp_path / "char-model")
    assert "has another tokenizer" in refused(other)
    classifier = make_checkpoint(tmp_path / "classifier")
    config = json.loads((classifier / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (classifier / "config.json").write_text(json.dumps(config))
    assert "sequence-classification" in refused(classifier)


def test_a_relative_reference_is_resolved_next_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "name: ref\n"
        "models: {base: /m/b, sft: [/m/a, /m/c], reward: /m/r, prompts: /m/p}\n"
        "probe: {length_reference: ref}\n"
    )
    spec = SweepSpec.from_file(spec_file)
    assert spec.probe.length_reference == str((tmp_path / "ref").resolve())
    assert spec.probe.reference_model == spec.probe.length_reference


def test_the_rest_path_confines_the_reference_to_the_model_roots(
    demo_world: Any, tmp_path: Path
) -> None:
    from service.validation import PathNotAllowedError, validate_spec
    from tests.sweeps.conftest import write_demo_spec

    roots = [demo_world.root.resolve()]
    inside = SweepSpec.from_file(
        write_demo_spec(
            demo_world,
            tmp_path / "inside.yaml",
            name="inside",
            probe={"length_reference": str(demo_world.sfts[-1])},
        )
    )
    checked = validate_spec(inside, roots)
    assert checked.probe.length_reference == str(demo_world.sfts[-1].resolve())
    outside = make_checkpoint(tmp_path / "elsewhere")
    spec = SweepSpec.from_file(
        write_demo_spec(
            demo_world,
            tmp_path / "outside.yaml",
            name="outside",
            probe={"length_reference": str(outside)},
        )
    )
    with pytest.raises(PathNotAllowedError, match=r"probe\.length_reference: .* outside"):
        validate_spec(spec, roots)
