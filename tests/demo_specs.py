"""Sweep specs over the demo world's checkpoints, shared by the sweep and service tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: A probe and a benchmark small enough for CI, big enough to be real (one seed per candidate;
#: the tests about repeats ask for more).
FAST_PROBE = {"steps": 3, "batch_size": 4, "response_length": 24, "repeats": 1}
FAST_BENCHMARKS = {"selection": ["bai_facts_mc"], "report": [], "limit": 8, "batch_size": 8}


def demo_spec(world: Any, *, name: str, **overrides: Any) -> dict[str, Any]:
    """A sweep spec over the demo world's checkpoints; a dict override merges into its section."""
    spec: dict[str, Any] = {
        "name": name,
        "models": {
            "base": str(world.base),
            "sft": [str(p) for p in world.sfts],
            "reward_rule": world.reward_rule,
            "prompts": str(world.prompts),
        },
        "search": {
            "n_trials": 4,
            "sampler": "tpe",
            "seed": 0,
            "seed_points": ["baselines", {"alpha": 0.5}],
        },
        "probe": FAST_PROBE,
        "benchmarks": FAST_BENCHMARKS,
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 2},
    }
    for key, value in overrides.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


def write_demo_spec(world: Any, path: Path, *, name: str, **overrides: Any) -> Path:
    """Write :func:`demo_spec` to ``path`` (YAML)."""
    path.write_text(yaml.safe_dump(demo_spec(world, name=name, **overrides), sort_keys=False))
    return path
