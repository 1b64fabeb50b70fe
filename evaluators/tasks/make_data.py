"""Write the JSONL data of the shipped task suite (deterministic; the output is committed).

Run ``python -m evaluators.tasks.make_data`` after changing this file, or with ``--check`` to
verify that the committed files are up to date. Only held-out problems are used: the demo world
never trains on them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from sweeps.demo.problems import MAX_VALUE, Problem, generate_problems

from . import TASKS_DIR

SEED = 20251123
N_MC = 200
N_GEN = 200
N_LONG = 100
N_CHOICES = 4


def _distractors(problem: Problem, rng: random.Random) -> list[int]:
    """Plausible wrong answers: near misses, a tens slip, and a flipped operator."""
    answer = problem.answer
    candidates = {answer + delta for delta in (-2, -1, 1, 2, -10, 10)}
    flipped = problem.operands[0]
    for index, (op, operand) in enumerate(zip(problem.ops, problem.operands[1:], strict=True)):
        last = index == len(problem.ops) - 1
        plus = (op == "plus") != last
        flipped = flipped + operand if plus else flipped - operand
    candidates.add(flipped)
    valid = sorted(c for c in candidates if 0 <= c <= MAX_VALUE and c != answer)
    return rng.sample(valid, N_CHOICES - 1)


def _mc_doc(problem: Problem) -> dict:
    rng = random.Random(problem.question)
    values = [problem.answer, *_distractors(problem, rng)]
    rng.shuffle(values)
    return {
        "question": problem.question,
        "choices": [f"answer {value}" for value in values],
        "label": values.index(problem.answer),
        "answer": problem.answer,
    }


def _gen_doc(problem: Problem) -> dict:
    return {"question": problem.question, "answer": problem.answer, "steps": len(problem.ops)}


def build_task_data() -> dict[str, list[dict]]:
    """The documents of every shipped task, keyed by task name (held-out problems only)."""
    short = generate_problems(SEED, N_MC + N_GEN, "heldout", min_steps=1, max_steps=3)
    long = generate_problems(SEED, N_LONG, "heldout", min_steps=4, max_steps=5)
    return {
        "bai_arith_mc": [_mc_doc(p) for p in short[:N_MC]],
        "bai_arith_gen": [_gen_doc(p) for p in short[N_MC:]],
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
