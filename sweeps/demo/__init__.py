"""The demo world: a tiny, locally trained model family that reproduces the BAI setting.

``build_world`` trains (or reuses, cached by recipe and seed) a pretrained ``base``, a
brief-answer ``sft-instruct``, a long-reasoning ``sft-reasoning`` and a pairwise ``reward``
model on the arithmetic task family of :mod:`sweeps.demo.problems`; see ``docs/demo-world.md``.
"""

from __future__ import annotations

from sweeps.demo.generation import Generation, GenerationStats, evaluate_generations, generate
from sweeps.demo.world import (
    DemoWorld,
    DemoWorldError,
    GateCheck,
    QualityGateError,
    StageRecipe,
    WorldRecipe,
    build_world,
    load_world,
)

__all__ = [
    "DemoWorld",
    "DemoWorldError",
    "GateCheck",
    "Generation",
    "GenerationStats",
    "QualityGateError",
    "StageRecipe",
    "WorldRecipe",
    "build_world",
    "evaluate_generations",
    "generate",
    "load_world",
]
