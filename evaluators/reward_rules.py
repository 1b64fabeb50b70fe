"""Built-in rule-based rewards, selectable by name in a sweep spec (``models.reward_rule``).

Each rule is a :data:`evaluators.rewards.RewardFunction`, ``fn(prompt, response) -> score``,
scored on decoded text. The rules here grade the demo world's arithmetic word problems
(``what is 17 plus 8 minus 5 ?``, answered ``... answer 20``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sweeps.demo.problems import OPERATORS, parse_answer

__all__ = ["REWARD_RULES", "arith_answer", "arith_correct", "expected_answer"]

_QUESTION = re.compile(r"what is (.+?) \?")


def expected_answer(prompt: str) -> int | None:
    """The value of the arithmetic question in ``prompt``, or ``None`` if there is none."""
    match = _QUESTION.search(prompt)
    if match is None:
        return None
    tokens = match.group(1).split()
    if len(tokens) % 2 == 0:
        return None
    try:
        value = int(tokens[0])
        for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
            if op not in OPERATORS:
                return None
            value = value + int(operand) if op == "plus" else value - int(operand)
    except ValueError:
        return None
    return value


def arith_correct(prompt: str, response: str) -> float:
    """1 if the response's first ``answer N`` is the right value, else 0."""
    expected = expected_answer(prompt)
    return float(expected is not None and parse_answer(response) == expected)


def arith_answer(prompt: str, response: str) -> float:
    """1 for the right answer, 0.2 for a wrong but well-formed ``answer N``, 0 otherwise."""
    answer = parse_answer(response)
    if answer is None:
        return 0.0
    return 1.0 if answer == expected_answer(prompt) else 0.2


#: Rule name -> reward function.
REWARD_RULES: dict[str, Callable[[str, str], float]] = {
    "arith_correct": arith_correct,
    "arith_answer": arith_answer,
}
