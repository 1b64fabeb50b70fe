"""The demo world's task family: multi-step arithmetic word problems.

A problem is ``what is 17 plus 8 minus 5 ?``. Its brief answer (what an instruction-tuned model
writes) is ``answer 20``; its reasoning trace (what a distilled reasoner writes) is
``17 plus 8 is 25 . 25 minus 5 is 20 . answer 20``.

Every part of the product that needs problems (world training, probe prompts, the shipped
lm-eval task suite, tests) uses this module, so they agree on the text format and on the
split: a problem's split is a pure function of its text (a hash), so the held-out and probe
splits are disjoint from the training split whoever generates them.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "heldout", "probe"]

OPERATORS = ("plus", "minus")
MAX_OPERAND = 30
MAX_VALUE = 99
ANSWER_PATTERN = re.compile(r"answer (-?\d+)")

# Share of the problem space per split, by hash bucket out of 100.
_SPLIT_BUCKETS: tuple[tuple[Split, int], ...] = (("train", 70), ("heldout", 85), ("probe", 100))


@dataclass(frozen=True)
class Problem:
    """One arithmetic problem: ``operands[0] ops[0] operands[1] ops[1] ...``."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def question(self) -> str:
        """The prompt text, e.g. ``what is 17 plus 8 minus 5 ?``."""
        parts = [str(self.operands[0])]
        for op, operand in zip(self.ops, self.operands[1:], strict=True):
            parts += [op, str(operand)]
        return "what is " + " ".join(parts) + " ?"

    @property
    def steps(self) -> list[tuple[int, str, int, int]]:
        """The intermediate steps ``(left, op, right, result)`` in evaluation order."""
        value = self.operands[0]
        out = []
        for op, operand in zip(self.ops, self.operands[1:], strict=True):
            result = value + operand if op == "plus" else value - operand
            out.append((value, op, operand, result))
            value = result
        return out

    @property
    def answer(self) -> int:
        """The final value."""
        return self.steps[-1][3]

    @property
    def brief_answer(self) -> str:
        """What the instruction-tuned model writes: ``answer 20``."""
        return f"answer {self.answer}"

    @property
    def reasoning_trace(self) -> str:
        """What the reasoning model writes: one sentence per step, then the answer."""
        sentences = [f"{left} {op} {right} is {result} ." for left, op, right, result in self.steps]
        return " ".join([*sentences, self.brief_answer])

    @property
    def split(self) -> Split:
        """The split this problem belongs to (a pure function of its text)."""
        bucket = int(hashlib.sha256(self.question.encode()).hexdigest(), 16) % 100
        for name, upper in _SPLIT_BUCKETS:
            if bucket < upper:
                return name
        raise AssertionError("unreachable")


def random_problem(rng: random.Random, *, min_steps: int = 1, max_steps: int = 3) -> Problem:
    """Draw a problem whose intermediate values all stay in ``[0, MAX_VALUE]``."""
    while True:
        n_steps = rng.randint(min_steps, max_steps)
        operands = [rng.randint(0, MAX_OPERAND)]
        ops: list[str] = []
        for _ in range(n_steps):
            ops.append(rng.choice(OPERATORS))
            operands.append(rng.randint(0, MAX_OPERAND))
        values = _running_values(operands, ops)
        if min(values) >= 0 and max(values) <= MAX_VALUE:
            return Problem(tuple(operands), tuple(ops))


def _running_values(operands: list[int], ops: list[str]) -> list[int]:
    values = [operands[0]]
    for op, operand in zip(ops, operands[1:], strict=True):
        values.append(values[-1] + operand if op == "plus" else values[-1] - operand)
    return values


def generate_problems(
    seed: int, count: int, split: Split, *, min_steps: int = 1, max_steps: int = 3
) -> list[Problem]:
    """``count`` distinct problems of ``split``, deterministic for ``seed``."""
    rng = random.Random(f"{seed}-{split}-{min_steps}-{max_steps}")
    seen: set[str] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > count * 200:
            raise ValueError(f"cannot draw {count} distinct {split} problems")
        problem = random_problem(rng, min_steps=min_steps, max_steps=max_steps)
        if problem.split == split and problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    return problems


def parse_answer(text: str) -> int | None:
    """The first ``answer N`` in a model's response, or ``None``."""
    match = ANSWER_PATTERN.search(text)
    return int(match.group(1)) if match else None
