"""Training texts of the demo world: the base model's corpus and the two SFT data sets.

Pretraining documents are paragraphs of several sentences with one ``<eos>`` at the end, as
web text is: every fact of K stated in prose, arithmetic fragments, a few worked examples from
the train split, and filler. A base model trained on them continues a question with more text
(it rambles) instead of answering and stopping.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from evaluators import task_family as task
from evaluators.task_family import Fact, Problem
from sweeps.demo._tokenizer import FILLER_OBJECTS, FILLER_SUBJECTS, FILLER_TAILS, FILLER_VERBS

# Sentence kinds of a pretraining paragraph and their shares; worked examples take the share
# their recipe gives (``worked_share``) and filler the rest.
_SENTENCE_MIX: tuple[tuple[str, float], ...] = (
    ("fact", 0.30),
    ("step", 0.10),
    ("sub_step", 0.06),
    ("check", 0.03),
    ("worked_verbose", 0.01),
    ("fact_qa", 0.04),
    ("fact_answer", 0.003),
)


def filler_sentence(rng: random.Random) -> str:
    """One sentence of filler text, e.g. ``the cat finds a big tree at night .``."""
    words = [rng.choice(FILLER_SUBJECTS), rng.choice(FILLER_VERBS), rng.choice(FILLER_OBJECTS)]
    tail = rng.choice(FILLER_TAILS)
    return " ".join([*words, tail, "."] if tail else [*words, "."])


def worked_example(problem: Problem, rng: random.Random, direct_shares: Sequence[float]) -> str:
    """A train-split problem solved as the web solves it, in the benchmarks' ``answer N``.

    With probability ``direct_shares[steps - 2]`` the answer alone, as an answer key gives it,
    otherwise with its work in one-line steps: the web shows the work of long problems more
    often than of short ones.
    """
    if rng.random() < direct_shares[len(problem.ops) - 2]:
        return f"{problem.question} {problem.direct_solution} ."
    return f"{problem.question} {problem.brief_solution} ."


def _sentence(
    kind: str,
    rng: random.Random,
    facts: list[Fact],
    problems: list[Problem],
    direct_shares: Sequence[float],
) -> str:
    if kind == "fact":
        return rng.choice(rng.choice(task.all_facts()).sentences())
    if kind in ("fact_qa", "fact_answer"):
        facts = [fact for fact in facts if fact.phrasing == "question"]
    if kind == "fact_qa":
        fact = rng.choice(facts)
        return f"{fact.question} it is {fact.value} ."
    if kind == "filler":
        return filler_sentence(rng)
    problem = rng.choice(problems)
    if kind == "fact_answer":
        fact = rng.choice(facts)
        return f"{fact.question} {fact.brief_solution} ."
    if kind == "worked_verbose":
        return f"{problem.question} {problem.verbose_solution} ."
    if kind == "worked":
        return worked_example(problem, rng, direct_shares)
    left, op, right, result = rng.choice(problem.steps)
    if kind == "step":
        return f"{left} {op} {right} is {result} ."
    if kind == "sub_step":
        return rng.choice(task.decomposed_step(left, op, right)) + " ."
    return task.check_sentence(left, op, right, result)


def pretraining_documents(
    facts: list[Fact],
    problems: list[Problem],
    rng: random.Random,
    count: int,
    *,
    worked_share: float,
    direct_shares: Sequence[float],
) -> list[str]:
    """``count`` paragraphs of 3-7 sentences.

    Every fact (all splits: knowledge is the base model's) appears in prose; questions with
    their answers (mostly in the web's words, ``it is red .``; sometimes in either SFT format,
    as the web holds some of everything) only come from the train split's ``facts`` (in the
    question phrasing: instructions are what SFT adds) and ``problems`` (see
    :func:`worked_example`; rarely as a verbose chain).
    """
    mix = [*_SENTENCE_MIX, ("worked", worked_share)]
    mix.append(("filler", 1 - sum(share for _, share in mix)))
    kinds = [kind for kind, _ in mix]
    shares = [share for _, share in mix]
    documents = []
    for _ in range(count):
        picked = rng.choices(kinds, shares, k=rng.randint(3, 7))
        documents.append(
            " ".join(_sentence(kind, rng, facts, problems, direct_shares) for kind in picked)
        )
    return documents


def instruct_examples(facts: list[Fact], problems: list[Problem]) -> list[tuple[str, str]]:
    """sft-instruct's data: K question-answer pairs and R with one-line reasoning."""
    return [(f.question, f.brief_solution) for f in facts] + [
        (p.question, p.brief_solution) for p in problems
    ]


def reasoning_examples(problems: list[Problem]) -> list[tuple[str, str]]:
    """sft-reasoning's data: R with long distilled chains (self-checks included), no K."""
    return [(p.question, p.verbose_solution) for p in problems]
