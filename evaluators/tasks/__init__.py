"""The lm-eval task suite shipped with bai-sweep, matched to the demo world's two domains.

Each task is an lm-eval YAML file in this directory with its JSONL data beside it
(``make_data.py`` writes the data deterministically from :mod:`evaluators.task_family`,
held-out split only): K (knowledge, the stand-in for MMLU) and R (multi-step arithmetic, the
stand-in for MATH). The YAML files name their data relative to themselves; lm-eval needs absolute
paths, so :func:`evaluators.benchmarks` renders them into a temporary directory at run time.

A task's *role* says how a sweep uses it by default: ``selection`` tasks drive the search (their
weighted mean is the ``benchmark`` objective), ``report`` tasks are held out and only reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TASKS_DIR = Path(__file__).resolve().parent

Role = Literal["selection", "report"]


@dataclass(frozen=True)
class ShippedTask:
    """One task of the shipped suite."""

    name: str
    role: Role
    metric: str
    description: str


#: The shipped suite: name -> task. ``metric`` is the lm-eval result key scored by default.
SHIPPED_TASKS: dict[str, ShippedTask] = {
    task.name: task
    for task in (
        ShippedTask(
            name="bai_facts_mc",
            role="selection",
            metric="acc,none",
            description="K: fact questions; pick ' answer X' among 4 choices by log-likelihood",
        ),
        ShippedTask(
            name="bai_arith_gen",
            role="selection",
            metric="exact_match,strict-match",
            description="R: 2-4 step problems; reason freely, extract 'answer N', exact match",
        ),
        ShippedTask(
            name="bai_arith_long_gen",
            role="report",
            metric="exact_match,strict-match",
            description="R: 5-step problems (longer than training); generate, exact match",
        ),
    )
}

#: Tasks that drive the search unless a config names others.
DEFAULT_SELECTION: tuple[str, ...] = tuple(
    name for name, task in SHIPPED_TASKS.items() if task.role == "selection"
)
#: Held-out tasks reported unless a config names others.
DEFAULT_REPORT: tuple[str, ...] = tuple(
    name for name, task in SHIPPED_TASKS.items() if task.role == "report"
)

__all__ = [
    "DEFAULT_REPORT",
    "DEFAULT_SELECTION",
    "SHIPPED_TASKS",
    "TASKS_DIR",
    "Role",
    "ShippedTask",
]
