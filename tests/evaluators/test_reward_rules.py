"""Built-in rule rewards grade the demo world's task family (K facts and R arithmetic)."""

from __future__ import annotations

import pytest

from evaluators import task_family as task
from evaluators.reward_rules import (
    REWARD_RULES,
    TOKEN_COST,
    arith_answer,
    arith_correct,
    bai_world,
    expected_answer,
)


def test_expected_answer_matches_the_task_family() -> None:
    for problem in task.generate_problems(0, 50, "probe"):
        assert expected_answer(problem.question) == str(problem.answer)
    for fact in task.facts("probe")[:50]:
        assert expected_answer(fact.question) == fact.value


@pytest.mark.parametrize(
    "prompt", ["hello", "what is 3 times 4 ?", "what is 3 plus ?", "what is the color of x ?"]
)
def test_no_answer_for_other_prompts(prompt: str) -> None:
    assert expected_answer(prompt) is None
    assert arith_correct(prompt, "answer 12") == 0.0


def test_scores() -> None:
    question = "what is 17 plus 8 minus 5 ?"
    assert arith_correct(question, "17 plus 8 is 25 . 25 minus 5 is 20 . answer 20") == 1.0
    assert arith_correct(question, "so the answer is 21 . answer 20") == 1.0
    assert arith_correct(question, "answer 21") == 0.0
    assert arith_answer(question, "answer 20") == 1.0
    assert arith_answer(question, "answer 21") == 0.2
    assert arith_answer(question, "twenty") == 0.0
    fact = task.facts("train")[0]
    assert arith_correct(fact.question, fact.brief_solution) == 1.0
    assert set(REWARD_RULES) == {"arith_correct", "arith_answer", "bai_world"}


def test_bai_world_prefers_concise_correct_reasoning() -> None:
    problem = task.generate_problems(0, 1, "probe", min_steps=3, max_steps=3)[0]
    brief, verbose = problem.brief_solution, problem.verbose_solution
    assert bai_world(problem.question, brief) == pytest.approx(
        1 - TOKEN_COST * (len(brief.split()) + 1)
    )
    assert bai_world(problem.question, brief) > bai_world(problem.question, verbose) > 0.5
    wrong = f"answer {problem.answer + 1}"
    assert bai_world(problem.question, verbose) > bai_world(problem.question, wrong)
    assert bai_world(problem.question, wrong) < 0
