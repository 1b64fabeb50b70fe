"""The demo world: a tiny, locally trained model family that reproduces the BAI setting.

``build_world`` trains (or reuses, cached by recipe and seed) a pretrained ``base`` holding
the knowledge domain K, an ``sft-instruct`` (K answers, one-line arithmetic) and a
``sft-reasoning`` (long arithmetic chains) on the task family of
:mod:`evaluators.task_family`, and checks the BAI setting's preconditions as gates; the probe
rewards with the built-in rule ``bai_world``. See ``docs/demo-world.md``.
"""

from __future__ import annotations

from sweeps.demo.generation import (
    Generation,
    GenerationStats,
    choice_accuracy,
    evaluate_generations,
    generate,
)
from sweeps.demo.world import (
    DemoWorld,
    DemoWorldError,
    GateCheck,
    QualityGateError,
    StageRecipe,
    WorldRecipe,
    build_world,
    knowledge_items,
    load_world,
    task_vector_ratio,
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
    "choice_accuracy",
    "evaluate_generations",
    "generate",
    "knowledge_items",
    "load_world",
    "task_vector_ratio",
]
