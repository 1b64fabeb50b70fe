"""Built-in rule rewards grade the demo world's arithmetic problems."""

from __future__ import annotations

import pytest

from evaluators.reward_rules import REWARD_RULES, arith_answer, arith_correct, expected_answer
from sweeps.demo.problems import generate_problems


def test_expected_answer_matches_the_problem_family() -> None:
    for problem in generate_problems(0, 50, "probe"):
        assert expected_answer(problem.question) == problem.answer


@pytest.mark.parametrize("prompt", ["hello", "what is 3 times 4 ?", "what is 3 plus ?"])
def test_no_answer_for_other_prompts(prompt: str) -> None:
    assert expected_answer(prompt) is None
    assert arith_correct(prompt, "answer 12") == 0.0


def test_scores() -> None:
    question = "what is 17 plus 8 minus 5 ?"
    assert arith_correct(question, "17 plus 8 is 25 . 25 minus 5 is 20 . answer 20") == 1.0
    assert arith_correct(question, "answer 21") == 0.0
    assert arith_answer(question, "answer 20") == 1.0
    assert arith_answer(question, "answer 21") == 0.2
    assert arith_answer(question, "twenty") == 0.0
    assert set(REWARD_RULES) == {"arith_correct", "arith_answer"}
