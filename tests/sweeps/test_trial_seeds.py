"""Combining the seeds of a trial's probes (no model needed)."""

from __future__ import annotations

from sweeps.trial import _combine_stability, _SeedRun, grade_task_family


def _run(seed: int, **stability: object) -> _SeedRun:
    return _SeedRun(seed, dict(stability), {}, {}, [], None)


def test_seeds_are_averaged_and_a_field_some_lack_is_left_out() -> None:
    combined = _combine_stability(
        [
            _run(0, stability=0.5, collapsed=False, correctness_retention=0.5, detail="a"),
            _run(1, stability=0.7, collapsed=True, detail="b"),
        ]
    )
    assert combined == {"stability": 0.6, "collapsed": True, "detail": ["a", "b"]}


def test_task_family_grading() -> None:
    assert grade_task_family("what is 17 plus 8 minus 5 ?", "17 plus 8 is 25 . answer 20")
    assert grade_task_family("what is 17 plus 8 minus 5 ?", "answer 21") is False
    assert grade_task_family("write a poem", "answer 20") is None
