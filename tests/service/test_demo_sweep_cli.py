"""The demo sweep's spec and the ``current`` link that ``examples/demo-sweep.yaml`` relies on."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from service.cli._demo_sweep import demo_sweep_spec, link_current


def _world(root: Path) -> SimpleNamespace:
    root.mkdir(parents=True)
    return SimpleNamespace(
        root=root,
        base=root / "base",
        sfts=[root / "sft-instruct", root / "sft-reasoning"],
        reward_rule="bai_world",
        prompts=root / "prompts.jsonl",
    )


def test_demo_sweep_spec_uses_the_world(tmp_path: Path) -> None:
    world = _world(tmp_path / "abc")
    spec = demo_sweep_spec(world)  # type: ignore[arg-type]
    assert spec.models.sft == [str(p) for p in world.sfts]
    assert spec.models.reward_rule == "bai_world" and spec.models.reward is None
    assert 6 <= spec.search.n_trials <= 8
    kinds = [p.kind for p in spec.seed_points()]
    assert kinds.count("baseline") == 2 and len(kinds) < spec.search.n_trials


def test_current_link_follows_the_latest_world(tmp_path: Path) -> None:
    first, second = _world(tmp_path / "one"), _world(tmp_path / "two")
    link_current(first)  # type: ignore[arg-type]
    assert (tmp_path / "current").resolve() == first.root.resolve()
    link_current(first)  # type: ignore[arg-type]
    link_current(second)  # type: ignore[arg-type]
    assert (tmp_path / "current").resolve() == second.root.resolve()
