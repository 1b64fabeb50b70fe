"""Training texts of the demo world, all drawn from the ``train`` split of the task family."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from sweeps.demo import problems as task
from sweeps.demo._tokenizer import FILLER_OBJECTS, FILLER_SUBJECTS, FILLER_TAILS, FILLER_VERBS
from sweeps.demo.problems import Problem


def filler_sentence(rng: random.Random) -> str:
    """One sentence of filler text, e.g. ``the cat finds a big tree at night .``."""
    words = [rng.choice(FILLER_SUBJECTS), rng.choice(FILLER_VERBS), rng.choice(FILLER_OBJECTS)]
    tail = rng.choice(FILLER_TAILS)
    return " ".join([*words, tail, "."] if tail else [*words, "."])


def pretraining_documents(problems: list[Problem], rng: random.Random, count: int) -> list[str]:
    """The base model's mixed corpus: questions, reasoning fragments, answers and filler.

    Questions mostly stand alone (a base model has seen questions, not how to answer them);
    a small share is followed by an answer, as on the web.
    """
    documents = []
    for _ in range(count):
        problem = rng.choice(problems)
        kind = rng.random()
        if kind < 0.25:
            documents.append(problem.question)
        elif kind < 0.30:
            documents.append(f"{problem.question} {problem.brief_answer}")
        elif kind < 0.35:
            documents.append(f"{problem.question} {problem.reasoning_trace}")
        elif kind < 0.75:
            sentences = problem.reasoning_trace.split(" . ")
            start = rng.randrange(len(sentences))
            end = rng.randint(start + 1, len(sentences))
            fragment = " . ".join(sentences[start:end])
            documents.append(fragment if fragment.startswith("answer") else f"{fragment} .")
        elif kind < 0.80:
            documents.append(problem.brief_answer)
        else:
            documents.append(" ".join(filler_sentence(rng) for _ in range(rng.randint(1, 3))))
    return documents


class ResponseKind(StrEnum):
    """The kinds of response the reward model is trained to rank."""

    CORRECT_BRIEF = "correct_brief"
    CORRECT_TRACE = "correct_trace"
    WRONG_BRIEF = "wrong_brief"
    WRONG_TRACE = "wrong_trace"
    TRUNCATED = "truncated"
    FILLER = "filler"


# (winner, loser): correctness first; at equal correctness the concise response wins; a
# response without an answer (cut off or off-topic) loses to any correct one.
PREFERENCES: tuple[tuple[ResponseKind, ResponseKind], ...] = (
    (ResponseKind.CORRECT_BRIEF, ResponseKind.WRONG_BRIEF),
    (ResponseKind.CORRECT_TRACE, ResponseKind.WRONG_TRACE),
    (ResponseKind.CORRECT_TRACE, ResponseKind.WRONG_BRIEF),
    (ResponseKind.CORRECT_BRIEF, ResponseKind.CORRECT_TRACE),
    (ResponseKind.WRONG_BRIEF, ResponseKind.WRONG_TRACE),
    (ResponseKind.CORRECT_TRACE, ResponseKind.TRUNCATED),
    (ResponseKind.CORRECT_BRIEF, ResponseKind.FILLER),
)


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``chosen`` is preferred over ``rejected`` as a response to ``problem``."""

    problem: Problem
    chosen: str
    rejected: str
    chosen_kind: ResponseKind
    rejected_kind: ResponseKind

    @property
    def question(self) -> str:
        """The prompt both responses answer."""
        return self.problem.question

    @property
    def chosen_finished(self) -> bool:
        """Whether the chosen response ends with eos (only truncated ones do not)."""
        return self.chosen_kind is not ResponseKind.TRUNCATED

    @property
    def rejected_finished(self) -> bool:
        """Whether the rejected response ends with eos (only truncated ones do not)."""
        return self.rejected_kind is not ResponseKind.TRUNCATED


def _wrong_value(value: int, rng: random.Random) -> int:
    """A wrong value in ``[0, MAX_VALUE]``, off by 5 to 40 (errors an RM this small can see)."""
    delta = rng.choice([d for d in range(-40, 41) if abs(d) >= 5])
    return value + delta if 0 <= value + delta <= task.MAX_VALUE else value - delta


def responses(problem: Problem, rng: random.Random) -> dict[ResponseKind, str]:
    """One response of every kind for ``problem``.

    A wrong trace makes one slip, an arithmetic error or a miscopied operand, and carries it
    on consistently, so the error is visible only by checking a step; a truncated one stops
    before its answer.
    """
    steps = problem.steps
    slip = rng.randrange(len(steps))
    copy_slip = rng.random() < 0.5
    sentences = []
    value = steps[0][0]
    for index, (_, op, right, _) in enumerate(steps):
        if index == slip and copy_slip:
            right = rng.choice([n for n in range(task.MAX_OPERAND + 1) if n != right])
        result = value + right if op == "plus" else value - right
        if index == slip and not copy_slip:
            result = _wrong_value(result, rng)
        sentences.append(f"{value} {op} {right} is {result} .")
        value = result
    wrong_trace = " ".join([*sentences, f"answer {value}"])
    trace_tokens = problem.reasoning_trace.split()
    cut = rng.randint(1, len(trace_tokens) - 2)
    return {
        ResponseKind.CORRECT_BRIEF: problem.brief_answer,
        ResponseKind.CORRECT_TRACE: problem.reasoning_trace,
        ResponseKind.WRONG_BRIEF: f"answer {_wrong_value(problem.answer, rng)}",
        ResponseKind.WRONG_TRACE: wrong_trace,
        ResponseKind.TRUNCATED: " ".join(trace_tokens[:cut]),
        ResponseKind.FILLER: filler_sentence(rng),
    }


# The length and format preferences are learnt within ~100 steps; correctness is the hard
# part, so the reward model's training adds these comparisons on further problems.
CORRECTNESS_PREFERENCES = PREFERENCES[:3]


def preference_pairs(
    problems: list[Problem],
    rng: random.Random,
    preferences: tuple[tuple[ResponseKind, ResponseKind], ...] = PREFERENCES,
) -> list[PreferencePair]:
    """Every comparison of ``preferences`` for each problem."""
    pairs = []
    for problem in problems:
        texts = responses(problem, rng)
        for winner, loser in preferences:
            pairs.append(PreferencePair(problem, texts[winner], texts[loser], winner, loser))
    return pairs
