"""Built-in rule-based rewards, selectable by name in a sweep spec (``models.reward_rule``).

Each rule is a :data:`evaluators.rewards.RewardFunction`, ``fn(prompt, response) -> score``,
scored on decoded text. The rules here grade the demo world's task family
(:mod:`evaluators.task_family`): fact questions (``what is the color of bako ?``, answered
``answer red``) and arithmetic word problems (``what is 17 plus 8 minus 5 ?``, answered
``... answer 20``).
"""

from __future__ import annotations

from collections.abc import Callable

from evaluators.task_family import expected_answer, parse_answer

__all__ = [
    "REWARD_RULES",
    "TOKEN_COST",
    "arith_answer",
    "arith_correct",
    "bai_world",
    "expected_answer",
]

#: What ``bai_world`` charges per response token (a word of the demo world's tokenizer).
TOKEN_COST = 0.005


def arith_correct(prompt: str, response: str) -> float:
    """1 if the response's first ``answer X`` is the right answer, else 0."""
    expected = expected_answer(prompt)
    return float(expected is not None and parse_answer(response) == expected)


def arith_answer(prompt: str, response: str) -> float:
    """1 for the right answer, 0.2 for a wrong but well-formed ``answer X``, 0 otherwise."""
    answer = parse_answer(response)
    if answer is None:
        return 0.0
    return 1.0 if answer == expected_answer(prompt) else 0.2


def bai_world(prompt: str, response: str) -> float:
    """The demo world's RLVR reward: correctness minus ``TOKEN_COST`` per response token.

    The token count is the response's words plus its end of sequence. A response cut at the
    probe's response length is charged by the probe's ``missing_eos_penalty`` on top, so the
    optimum is concise, finished, correct reasoning.
    """
    return arith_correct(prompt, response) - TOKEN_COST * (len(response.split()) + 1)


#: Rule name -> reward function.
REWARD_RULES: dict[str, Callable[[str, str], float]] = {
    "arith_correct": arith_correct,
    "arith_answer": arith_answer,
    "bai_world": bai_world,
}
