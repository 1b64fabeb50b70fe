"""Write the JSONL data of the shipped task suite (deterministic; the output is committed).

Run ``python -m evaluators.tasks.make_data`` after changing this file or the task family, or
with ``--check`` to verify that the committed files are up to date. Only held-out questions are
used: the demo world never trains on them (its facts are in the base model's pretraining
prose, as knowledge is, but never as a question with its answer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluators.task_family import Fact, Problem, facts, generate_problems

from . import TASKS_DIR

SEED = 20251123
N_GEN = 200
N_LONG = 100
LONG_STEPS = 5


def _facts_doc(fact: Fact) -> dict:
    values, label = fact.choices()
    return {
        "question": fact.question,
        "choices": [f"answer {value}" for value in values],
        "label": label,
        "answer": fact.answer,
    }


def _gen_doc(problem: Problem) -> dict:
    return {"question": problem.question, "answer": problem.answer, "steps": len(problem.ops)}


def build_task_data() -> dict[str, list[dict]]:
    """The documents of every shipped task, keyed by task name (held-out questions only)."""
    problems = generate_problems(SEED, N_GEN, "heldout")
    long = generate_problems(SEED, N_LONG, "heldout", min_steps=LONG_STEPS, max_steps=LONG_STEPS)
    return {
        "bai_facts_mc": [_facts_doc(fact) for fact in facts("heldout")],
        "bai_arith_gen": [_gen_doc(p) for p in problems],
        "bai_arith_long_gen": [_gen_doc(p) for p in long],
    }


def _render(docs: list[dict]) -> str:
    return "".join(json.dumps(doc, sort_keys=True) + "\n" for doc in docs)


def write_task_data(out_dir: Path = TASKS_DIR) -> list[Path]:
    """Write ``<task>.jsonl`` for every shipped task into ``out_dir``; return the paths."""
    paths = []
    for name, docs in build_task_data().items():
        path = out_dir / f"{name}.jsonl"
        path.write_text(_render(docs), encoding="utf-8")
        paths.append(path)
    return paths


def stale_task_data(out_dir: Path = TASKS_DIR) -> list[Path]:
    """The data files in ``out_dir`` that differ from what :func:`build_task_data` gives."""
    stale = []
    for name, docs in build_task_data().items():
        path = out_dir / f"{name}.jsonl"
        if not path.is_file() or path.read_text(encoding="utf-8") != _render(docs):
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: write the data, or ``--check`` that it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only verify the committed files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_task_data()
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_task_data():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
