"""The task family shared by the demo world, the shipped tasks and the reward rules."""

from __future__ import annotations

import pytest

from evaluators import task_family as task


def test_splits_are_disjoint_and_a_function_of_the_text() -> None:
    questions = {
        split: {p.question for p in task.generate_problems(0, 300, split)}
        | {fact.question for fact in task.facts(split)}
        for split in ("train", "heldout", "probe")
    }
    assert all(len(q) > 300 for q in questions.values())
    assert not questions["train"] & questions["heldout"]
    assert not questions["train"] & questions["probe"]
    assert not questions["heldout"] & questions["probe"]
    for split, texts in questions.items():
        assert {task.split_of(text) for text in texts} == {split}
    assert len({fact.question for fact in task.all_facts()}) == len(task.all_facts())


def test_problems_and_their_solutions() -> None:
    for problem in task.generate_problems(3, 200, "train", min_steps=2, max_steps=5):
        assert 2 <= len(problem.ops) <= 5
        values = [problem.operands[0], *(step[3] for step in problem.steps)]
        assert min(values) >= 0 and max(values) <= task.MAX_VALUE
        assert task.parse_problem(problem.question) == problem
        for solution in (problem.brief_solution, problem.verbose_solution):
            assert task.parse_answer(solution) == str(problem.answer)
            assert solution.endswith(f"answer {problem.answer}")
        assert len(problem.verbose_solution.split()) >= 3 * len(problem.brief_solution.split())
        assert problem.direct_solution == f"answer {problem.answer}"


def test_the_verbose_chain_checks_each_step_right_after_it() -> None:
    problem = task.Problem((17, 8, 5), ("plus", "minus"))
    assert problem.verbose_solution == (
        "17 plus 8 is 25 . let me check : 25 minus 8 is 17 . yes , 17 plus 8 is 25 . "
        "25 minus 5 is 20 . let me check : 20 plus 5 is 25 . yes , 25 minus 5 is 20 . "
        "so the answer is 20 . answer 20"
    )


@pytest.mark.parametrize(
    ("left", "op", "right", "parts"),
    [
        (51, "plus", 17, ["51 plus 10 is 61", "61 plus 7 is 68"]),
        (51, "minus", 17, ["51 minus 10 is 41", "41 minus 7 is 34"]),
        (5, "plus", 20, ["5 plus 20 is 25"]),
        (5, "minus", 3, ["5 minus 3 is 2"]),
        (5, "plus", 0, ["5 plus 0 is 5"]),
    ],
)
def test_decomposed_step(left: int, op: str, right: int, parts: list[str]) -> None:
    assert task.decomposed_step(left, op, right) == parts


def test_facts_answers_and_choices() -> None:
    fact = task.all_facts()[0]
    assert task.expected_answer(fact.question) == fact.value
    assert task.domain_of(fact.question) == "K"
    assert task.domain_of("what is 1 plus 2 ?") == "R"
    assert task.domain_of("hello") is None
    values, label = fact.choices()
    assert len(set(values)) == 4 and values[label] == fact.value
    assert set(values) <= set(task.ATTRIBUTES[fact.attribute])
    assert all(fact.entity in sentence for sentence in fact.sentences())


def test_parse_answer_reads_the_first_answer_token() -> None:
    assert task.parse_answer("so the answer is 20 . answer 21") == "21"
    assert task.parse_answer("answer red") == "red"
    assert task.parse_answer("answer -3 answer 4") == "-3"
    assert task.parse_answer("no answer") is None
