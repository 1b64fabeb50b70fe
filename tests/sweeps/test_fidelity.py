"""Successive halving: rungs, non-dominated promotion order and the final ranking."""

from __future__ import annotations

import math

import pytest

from sweeps import fidelity as fidelity_module
from sweeps.exceptions import InvalidSpecError
from sweeps.fidelity import (
    Probe,
    crowding_distances,
    final_ranking,
    next_rung,
    non_dominated_ranks,
    planned_runs,
    probe_updates,
    promote,
    promotion_count,
    schedule,
    spec_at,
)
from sweeps.spec import FidelitySpec, SweepSpec

MAXIMIZE = ["maximize", "maximize"]
# a, b, c: the front; d, f: the second layer; e: the third.
POINTS = {
    "a": (1.0, 0.0),
    "b": (0.0, 1.0),
    "c": (0.6, 0.6),
    "d": (0.5, 0.5),
    "e": (0.1, 0.1),
    "f": (0.55, 0.3),
}


def _spec(**overrides: object) -> SweepSpec:
    models = {"base": "/m/base", "sft": ["/m/a", "/m/b"], "reward": "/m/rm", "prompts": "/m/p"}
    return SweepSpec.parse({"name": "fidelity", "models": models, **overrides})


def test_non_dominated_ranks_and_crowding_by_hand() -> None:
    points = list(POINTS.values())
    assert non_dominated_ranks(points, MAXIMIZE) == [0, 0, 0, 1, 2, 1]
    assert non_dominated_ranks([(1.0,), (3.0,), (2.0,)], ["minimize"]) == [0, 2, 1]
    # c sits between a and b: a gap of 1 (of a range of 1) in each objective.
    assert crowding_distances(points, [0, 1, 2]) == {0: math.inf, 1: math.inf, 2: 2.0}
    assert crowding_distances(points, [3, 5]) == {3: math.inf, 5: math.inf}


def test_a_rank_that_does_not_fit_is_cut_by_hypervolume(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a reference point the kept subset of the boundary rank is the one with the most
    volume; crowding alone keeps the extremes, whose boxes are thin."""
    front = {"a": (0.9, 0.1), "b": (0.1, 0.8), "c": (0.6, 0.6), "d": (0.2, 0.2)}
    # By hand, reference (0, 0): {a, b} 0.09 + 0.08 - 0.01 = 0.16; {a, c} 0.36 + 0.03 = 0.39;
    # {b, c} 0.36 + 0.02 = 0.38.
    assert promote(front, MAXIMIZE, eta=2) == ["a", "b"]
    assert promote(front, MAXIMIZE, eta=2, reference=(0.0, 0.0)) == ["a", "c"]
    # Keeping every candidate is the plain order.
    assert promote(front, MAXIMIZE, eta=2, count=4, reference=(0.0, 0.0)) == ["a", "b", "c", "d"]
    # Minimized objectives, mirrored: the same pick.
    mirrored = {k: (1 - x, 1 - y) for k, (x, y) in front.items()}
    assert promote(mirrored, ["minimize"] * 2, eta=2, reference=(1.0, 1.0)) == ["a", "c"]
    # Large rungs are cut greedily: c (0.36) first, then a (+0.03, where b adds 0.02).
    monkeypatch.setattr(fidelity_module, "_EXACT_CUT_SUBSETS", 0)
    assert promote(front, MAXIMIZE, eta=2, reference=(0.0, 0.0)) == ["c", "a"]
    with pytest.raises(ValueError, match="reference point"):
        promote(front, MAXIMIZE, eta=2, reference=(0.0,))


def test_promotion_order_by_rank_then_crowding() -> None:
    assert promote(POINTS, MAXIMIZE, eta=2) == ["a", "b", "c"]
    assert promote(POINTS, MAXIMIZE, eta=2, count=6) == ["a", "b", "c", "d", "f", "e"]
    # Within a rank the more isolated point goes first: c is crowded between the extremes.
    crowded = {"mid": (0.5, 0.5), "left": (0.0, 1.0), "right": (1.0, 0.0)}
    assert promote(crowded, MAXIMIZE, eta=2, count=3) == ["left", "right", "mid"]
    assert promotion_count(9, 3) == 3 and promotion_count(2, 3) == 1 and promotion_count(0, 3) == 0
    with pytest.raises(ValueError):
        promote({"x": (1.0,)}, MAXIMIZE, eta=2)


def test_schedule_and_cost() -> None:
    rungs = schedule(FidelitySpec(enabled=True), steps=27, repeats=3)
    assert [(r.steps, r.repeats) for r in rungs] == [(3, 1), (9, 2), (27, 3)]
    # 9 candidates at 3x1, 3 at 9x2, 1 at 27x3 against 9 at 27x3.
    assert probe_updates(rungs, 9) == 27 + 54 + 81
    assert probe_updates(rungs, 9) / (9 * 27 * 3) == pytest.approx(162 / 729)
    two = schedule(FidelitySpec(rungs=2, eta=2, min_steps=5, min_repeats=2), steps=8, repeats=2)
    assert [(r.steps, r.repeats) for r in two] == [(5, 2), (8, 2)]


def test_a_fractional_eta_promotes_floor_n_over_eta_and_rounds_the_steps() -> None:
    # 8 candidates: eta 2 keeps 4, 2.5 keeps 3, 3 and 4 keep 2; 8 / (8 / 3) is 3, not 2.999...
    assert [promotion_count(8, eta) for eta in (2, 2.5, 8 / 3, 3, 4)] == [4, 3, 3, 2, 2]
    assert (promotion_count(2, 2.5), promotion_count(0, 2.5)) == (1, 0)
    with pytest.raises(ValueError, match="eta must be > 1"):
        promotion_count(8, 1.0)
    # Steps: min_steps x eta^r rounded half up (1, 2.5 -> 3, 6.25 -> 6); default min_steps is
    # floor(steps / eta^(rungs - 1)): 25 / 6.25 = 4.
    ladder = schedule(FidelitySpec(rungs=4, eta=2.5, min_steps=1), steps=40, repeats=4)
    assert [(r.steps, r.repeats) for r in ladder] == [(1, 1), (3, 2), (6, 3), (40, 4)]
    assert [r.steps for r in schedule(FidelitySpec(eta=2.5), steps=25, repeats=1)] == [4, 10, 25]
    # The demo's shape at eta 2.5: 8 at 2x1, then 3 at 8x3 — 16 + 72 of 8 x 24 = 192 updates.
    demo = schedule(FidelitySpec(rungs=2, eta=2.5, min_steps=2), steps=8, repeats=3)
    assert probe_updates(demo, 8) == 88 and planned_runs(demo, 8) == 11
    # An integer eta keeps its type in the stored spec; a fraction is stored as given.
    assert FidelitySpec(eta=4).model_dump()["eta"] == 4
    assert FidelitySpec(eta=2.5).model_dump()["eta"] == 2.5


def test_successive_halving_on_a_synthetic_objective() -> None:
    """Two objectives of x in [0, 1] whose noise shrinks with the probe's steps."""

    def measure(x: float, steps: int) -> tuple[float, float]:
        noise = 0.001 * math.sin(97 * x) / steps
        return (-((x - 0.7) ** 2) + noise, -abs(x - 0.6) - noise)

    candidates = [k / 8 for k in range(9)]
    rungs = schedule(FidelitySpec(enabled=True), steps=27, repeats=3)
    reached: dict[float, tuple[int, tuple[float, float]]] = {}
    active = candidates
    probed = []
    for rung in rungs:
        probed.append(list(active))
        scores = {x: measure(x, rung.steps) for x in active}
        reached.update({x: (rung.index, s) for x, s in scores.items()})
        if rung.index < len(rungs) - 1:
            active = promote(scores, MAXIMIZE, eta=rung.eta)
    assert [len(p) for p in probed] == [9, 3, 1]
    # 0.625 and 0.75 are the front (optima 0.7 and 0.6); 0.5 and 0.875 share the next layer,
    # where the caller's order breaks the tie.
    assert sorted(probed[1]) == [0.5, 0.625, 0.75]
    ranking = final_ranking(reached, MAXIMIZE)
    assert ranking[0] == probed[2][0]
    assert set(ranking[1:3]) == set(probed[1]) - set(probed[2])
    assert set(ranking[3:]) == set(candidates) - set(probed[1])


def test_fidelity_spec_validation_and_rung_specs() -> None:
    spec = _spec(probe={"steps": 27, "repeats": 3}, fidelity={"enabled": True})
    rung = schedule(spec.fidelity, steps=27, repeats=3)[0]
    brief = spec_at(spec, rung)
    assert (brief.probe.steps, brief.probe.repeats) == (3, 1)
    assert spec.probe.steps == 27  # unchanged
    # The budget counts probe runs: 9 candidates, then 3, then 1 (one rung without fidelity).
    nine = _spec(search={"n_trials": 9}, probe={"steps": 27, "repeats": 3})
    assert nine.trial_budget() == 9 and [r.steps for r in nine.rungs()] == [27]
    halving = nine.model_copy(update={"fidelity": spec.fidelity})
    assert halving.trial_budget() == 13 == planned_runs(halving.rungs(), 9)
    with pytest.raises(InvalidSpecError, match=r"fidelity\.min_steps: 30 is not below"):
        _spec(probe={"steps": 30}, fidelity={"enabled": True, "min_steps": 30})
    with pytest.raises(InvalidSpecError, match=r"fidelity\.min_repeats: 4 exceeds"):
        _spec(probe={"repeats": 3}, fidelity={"enabled": True, "min_repeats": 4})
    for eta in (1, 1.2, 11):
        with pytest.raises(InvalidSpecError, match=r"fidelity\.eta"):
            _spec(fidelity={"eta": eta})


def _probe(number: int, rung: int, values: tuple[float, ...] | None, **kw: object) -> Probe:
    return Probe(number, int(kw.get("candidate", number)), rung, values, bool(kw.get("ok", True)))


def test_next_rung_derives_the_ladder_from_finished_probes() -> None:
    rungs = schedule(FidelitySpec(enabled=True, rungs=3, eta=2, min_steps=1), steps=4, repeats=2)
    assert [(r.steps, r.repeats) for r in rungs] == [(1, 1), (2, 2), (4, 2)]
    # Rung 0 of 5 candidates, 3 finished: still rung 0, nothing promoted yet.
    first = [_probe(n, 0, POINTS[k]) for n, k in enumerate("abc")]
    plan = next_rung(first, rungs, MAXIMIZE, candidates=5)
    assert plan is not None and (plan.rung.index, plan.planned, plan.finished) == (0, 5, 3)
    # All 5 finished (e failed, f infeasible): 5 // 2 = 2 promoted, feasible first by rank and
    # crowding (a and b are the extremes of the front), the failed and infeasible left out.
    rung0 = [
        *first,
        _probe(3, 0, None),
        _probe(4, 0, POINTS["f"], ok=False),
    ]
    plan = next_rung(rung0, rungs, MAXIMIZE, candidates=5)
    assert plan is not None and (plan.rung.index, plan.planned, plan.promoted) == (1, 2, [0, 1])
    assert plan.missing == [0, 1]
    # With the reference point the sweep's runner passes, the front {a, b, c} is cut to the pair
    # with the most volume: a and b lie on the reference's axes (no volume), so c goes in.
    cut = next_rung(rung0, rungs, MAXIMIZE, candidates=5, reference=(0.0, 0.0))
    assert cut is not None and cut.promoted == [0, 2]
    # Mid-rung 1 (candidate 1 probed as trial 7): only candidate 0 is missing.
    mid = [*rung0, _probe(7, 1, (0.2, 0.9), candidate=1)]
    plan = next_rung(mid, rungs, MAXIMIZE, candidates=5)
    assert plan is not None and (plan.finished, plan.missing) == (1, [0])
    # Rung 1 done: one promoted (the better of the two at rung 1), then the ladder ends.
    done1 = [*mid, _probe(8, 1, (0.9, 0.95), candidate=0)]
    plan = next_rung(done1, rungs, MAXIMIZE, candidates=5)
    assert plan is not None and (plan.rung.index, plan.promoted) == (2, [0])
    assert (
        next_rung([*done1, _probe(9, 2, (0.9, 0.9), candidate=0)], rungs, MAXIMIZE, candidates=5)
        is None
    )
    # Infeasible candidates are promoted only when too few feasible ones completed.
    infeasible = [_probe(0, 0, POINTS["a"], ok=False), _probe(1, 0, None)]
    plan = next_rung(infeasible, rungs, MAXIMIZE, candidates=2)
    assert plan is not None and plan.promoted == [0]
    # Nothing completed: no promotion, the ladder ends early.
    assert (
        next_rung([_probe(0, 0, None), _probe(1, 0, None)], rungs, MAXIMIZE, candidates=2) is None
    )
