"""The demo world's task family: two domains, K (knowledge) and R (multi-step arithmetic).

This module sits below everything that uses it (the demo world in ``sweeps.demo``, the shipped
lm-eval task suite in ``evaluators.tasks``, the built-in reward rules, tests) and imports
nothing from the project, so no arrow runs back up.

**K** stands in for MMLU / ArenaHard: a fixed table of entity-attribute facts (``the color of
bako is red .``) that the base model reads during pretraining. Asked ``what is the color of
bako ?``, an instruction-tuned model answers ``answer red``.

**R** stands in for MATH: ``what is 17 plus 8 minus 5 ?`` (2-5 steps). Its *brief* solution
(one-line reasoning, what sft-instruct writes) is ``17 plus 8 is 25 . 25 minus 5 is 20 .
answer 20``; its *verbose* solution (a distilled reasoner's chain) writes the same steps,
checks each one right after it (undoes it and restates it: ``let me check : 25 minus 8 is 17 .
yes , 17 plus 8 is 25 .``), and sums up before the same final ``answer 20``.

A question's split (train, held-out, probe) is a pure function of its text (a hash), so every
generator agrees on it and the splits are disjoint.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

Split = Literal["train", "heldout", "probe"]
Domain = Literal["K", "R"]

OPERATORS = ("plus", "minus")
MAX_OPERAND = 30
MAX_VALUE = 99
ANSWER_PATTERN = re.compile(r"\banswer (?!is\b)(-?\w+)")

# Share of each domain's question space per split, by hash bucket out of 100.
_SPLIT_BUCKETS: tuple[tuple[Split, int], ...] = (("train", 60), ("heldout", 85), ("probe", 100))

# --- K: the fact table -------------------------------------------------------------------------

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "yellow", "black", "white", "brown", "pink"),
    "city": ("rome", "oslo", "lima", "cairo", "delhi", "tokyo", "quito", "paris"),
    "pet": ("dog", "cat", "fox", "owl", "bear", "frog", "goat", "horse"),
}
#: How the base model's corpus states a fact (two phrasings per attribute).
FACT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": ("the color of {entity} is {value} .", "{entity} likes the color {value} ."),
    "city": ("the city of {entity} is {value} .", "{entity} lives in {value} ."),
    "pet": ("the pet of {entity} is {value} .", "{entity} has a pet {value} ."),
}
N_ENTITIES = 400
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@cache
def entities() -> tuple[str, ...]:
    """The world's entity names, e.g. ``bako`` (deterministic, no collisions with words)."""
    rng = random.Random("bai-entities")
    names: list[str] = []
    while len(names) < N_ENTITIES:
        name = "".join(
            rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 2, 3)))
        )
        if name not in names:
            names.append(name)
    return tuple(names)


#: How a K item is asked: the question form is the one the web (the base's corpus) uses; the
#: instruction form is only ever seen in instruction tuning.
PHRASINGS = {
    "question": "what is the {attribute} of {entity} ?",
    "instruction": "tell me the {attribute} of {entity} .",
}


@dataclass(frozen=True)
class Fact:
    """One K item: asked in ``phrasing``, ``entity``'s ``attribute`` is ``value``."""

    entity: str
    attribute: str
    phrasing: str = "question"

    @property
    def value(self) -> str:
        """The attribute's value (a pure function of entity and attribute)."""
        digest = hashlib.sha256(f"{self.entity}/{self.attribute}".encode()).digest()
        options = ATTRIBUTES[self.attribute]
        return options[digest[0] % len(options)]

    @property
    def question(self) -> str:
        """``what is the color of bako ?`` or ``tell me the color of bako .``."""
        return PHRASINGS[self.phrasing].format(attribute=self.attribute, entity=self.entity)

    @property
    def answer(self) -> str:
        """The expected answer token."""
        return self.value

    @property
    def brief_solution(self) -> str:
        """``answer red``."""
        return f"answer {self.value}"

    def choices(self, count: int = 4) -> tuple[list[str], int]:
        """``count`` candidate values (the right one among them) and the right one's index."""
        rng = random.Random(self.question)
        others = [v for v in ATTRIBUTES[self.attribute] if v != self.value]
        options = [self.value, *rng.sample(others, count - 1)]
        rng.shuffle(options)
        return options, options.index(self.value)

    def sentences(self) -> list[str]:
        """The fact stated in every phrasing of :data:`FACT_TEMPLATES`."""
        return [
            template.format(entity=self.entity, value=self.value)
            for template in FACT_TEMPLATES[self.attribute]
        ]

    @property
    def split(self) -> Split:
        """The split of this question."""
        return split_of(self.question)


@cache
def all_facts() -> tuple[Fact, ...]:
    """Every K item of the world (entities x attributes x phrasings)."""
    return tuple(
        Fact(entity, attribute, phrasing)
        for entity in entities()
        for attribute in ATTRIBUTES
        for phrasing in PHRASINGS
    )


def facts(split: Split, phrasing: str | None = None) -> list[Fact]:
    """The K items whose question belongs to ``split`` (of one ``phrasing``, or all)."""
    return [
        fact for fact in all_facts() if fact.split == split and phrasing in (None, fact.phrasing)
    ]


@cache
def _facts_by_question() -> dict[str, Fact]:
    return {fact.question: fact for fact in all_facts()}


# --- R: arithmetic -------------------------------------------------------------------------------


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
    def brief_solution(self) -> str:
        """One-line reasoning (sft-instruct): one sentence per step, then ``answer N``."""
        sentences = [f"{left} {op} {right} is {result} ." for left, op, right, result in self.steps]
        return " ".join([*sentences, f"answer {self.answer}"])

    @property
    def direct_solution(self) -> str:
        """The answer without any work: ``answer 20``."""
        return f"answer {self.answer}"

    @property
    def verbose_solution(self) -> str:
        """A distilled reasoner's chain: every step, each checked right after it is written.

        A step is written as in the brief solution, then undone and restated
        (:func:`check_sentence`), so the result the next step starts from stands just before
        it; a summary sentence precedes the same final ``answer N``.
        """
        parts = []
        for left, op, right, result in self.steps:
            parts.append(f"{left} {op} {right} is {result} .")
            parts.append(check_sentence(left, op, right, result))
        parts.append(f"so the answer is {self.answer} . answer {self.answer}")
        return " ".join(parts)

    @property
    def split(self) -> Split:
        """The split of this question."""
        return split_of(self.question)


def decomposed_step(left: int, op: str, right: int) -> list[str]:
    """``left op right`` as a tens step and a units step, e.g. ``51 plus 10 is 61``."""
    sign = 1 if op == "plus" else -1
    parts, value = [], left
    for amount in (right - right % 10, right % 10):
        if amount:
            parts.append(f"{value} {op} {amount} is {value + sign * amount}")
            value += sign * amount
    return parts or [f"{left} {op} 0 is {left}"]


def check_sentence(left: int, op: str, right: int, result: int) -> str:
    """The self-check a reasoner writes after a step: undo it, compare, restate the step."""
    inverse = "minus" if op == "plus" else "plus"
    return (
        f"let me check : {result} {inverse} {right} is {left} . "
        f"yes , {left} {op} {right} is {result} ."
    )


def random_problem(rng: random.Random, *, min_steps: int = 2, max_steps: int = 4) -> Problem:
    """Draw a problem whose intermediate values all stay in ``[0, MAX_VALUE]``."""
    while True:
        n_steps = rng.randint(min_steps, max_steps)
        operands = [rng.randint(0, MAX_OPERAND)]
        ops: list[str] = []
        for _ in range(n_steps):
            ops.append(rng.choice(OPERATORS))
            operands.append(rng.randint(0, MAX_OPERAND))
        problem = Problem(tuple(operands), tuple(ops))
        values = [problem.operands[0], *(step[3] for step in problem.steps)]
        if min(values) >= 0 and max(values) <= MAX_VALUE:
            return problem


def generate_problems(
    seed: int, count: int, split: Split, *, min_steps: int = 2, max_steps: int = 4
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


_ARITHMETIC_QUESTION = re.compile(r"what is (-?\d+(?: (?:plus|minus) -?\d+)+) \?")


def parse_problem(text: str) -> Problem | None:
    """The arithmetic problem asked in ``text``, or ``None``."""
    match = _ARITHMETIC_QUESTION.search(text)
    if match is None:
        return None
    tokens = match.group(1).split()
    return Problem(tuple(int(t) for t in tokens[0::2]), tuple(tokens[1::2]))


# --- both ----------------------------------------------------------------------------------------


def split_of(question: str) -> Split:
    """The split a question belongs to (a pure function of its text)."""
    bucket = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 100
    for name, upper in _SPLIT_BUCKETS:
        if bucket < upper:
            return name
    raise AssertionError("unreachable")


def expected_answer(prompt: str) -> str | None:
    """The right answer token to the K or R question in ``prompt``, or ``None``."""
    problem = parse_problem(prompt)
    if problem is not None:
        return str(problem.answer)
    fact = _facts_by_question().get(prompt.strip())
    if fact is None:
        match = re.search(r"(what is|tell me) the \w+ of \w+ [?.]", prompt)
        fact = _facts_by_question().get(match.group(0)) if match else None
    return fact.answer if fact is not None else None


def parse_answer(text: str) -> str | None:
    """The first ``answer X`` in a model's response (``X`` a number or a word), or ``None``."""
    match = ANSWER_PATTERN.search(text)
    return match.group(1) if match else None


def domain_of(prompt: str) -> Domain | None:
    """``"R"`` for an arithmetic question, ``"K"`` for a fact question, else ``None``."""
    if parse_problem(prompt) is not None:
        return "R"
    return "K" if expected_answer(prompt) is not None else None


def vocabulary_words() -> list[str]:
    """Every word the task family writes (the demo tokenizer adds numbers and filler)."""
    words = ["what", "is", "the", "of", "answer", "tell", "me", "?", ".", ":", *OPERATORS]
    words += list(ATTRIBUTES)
    for values in ATTRIBUTES.values():
        words += values
    for templates in FACT_TEMPLATES.values():
        for template in templates:
            words += [w for w in template.split() if not w.startswith("{")]
    words += entities()
    words += check_sentence(1, "plus", 1, 2).split()
    words += ["so", ",", "it"]
    return [w for w in dict.fromkeys(words) if not w.lstrip("-").isdigit()]
