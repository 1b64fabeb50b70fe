"""The BAI search space: stick-breaking simplex map, grid, seed points."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from scipy import stats

from sweeps.search_space import (
    PAPER_ALPHAS,
    Candidate,
    SearchSpace,
    SeedPoint,
    dedupe_seed_points,
    make_sampler,
    uniforms_from_weights,
    weights_from_uniforms,
)


def _sample_weights(n: int, count: int, seed: int = 0) -> np.ndarray:
    rng = random.Random(seed)
    return np.array(
        [weights_from_uniforms([rng.random() for _ in range(n - 1)]) for _ in range(count)]
    )


@pytest.mark.parametrize("n", [2, 3, 4])
def test_weights_lie_on_the_simplex(n: int) -> None:
    samples = _sample_weights(n, 500)
    assert samples.shape == (500, n)
    assert (samples >= 0).all()
    np.testing.assert_allclose(samples.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_marginals_are_those_of_the_uniform_dirichlet(n: int) -> None:
    # Uniform on the simplex = Dirichlet(1, ..., 1): every marginal is Beta(1, n - 1), mean 1/n.
    samples = _sample_weights(n, 4000, seed=n)
    for i in range(n):
        result = stats.kstest(samples[:, i], stats.beta(1, n - 1).cdf)
        assert result.pvalue > 1e-3, (i, result)
        assert abs(samples[:, i].mean() - 1 / n) < 0.02


def test_naive_normalisation_would_fail_the_same_test() -> None:
    # The test above has power: normalised uniforms are not uniform on the simplex.
    rng = np.random.default_rng(0)
    raw = rng.random((4000, 3))
    naive = raw / raw.sum(axis=1, keepdims=True)
    assert stats.kstest(naive[:, 0], stats.beta(1, 2).cdf).pvalue < 1e-3


def test_pairs_are_jointly_uniform_for_three_models() -> None:
    # For Dirichlet(1,1,1), w_0 / (w_0 + w_1) is Uniform(0, 1) independently of w_0 + w_1.
    samples = _sample_weights(3, 4000, seed=7)
    ratio = samples[:, 0] / (samples[:, 0] + samples[:, 1])
    assert stats.kstest(ratio, stats.uniform.cdf).pvalue > 1e-3
    assert abs(stats.spearmanr(ratio, samples[:, 0] + samples[:, 1]).statistic) < 0.06


@pytest.mark.parametrize(
    "weights",
    [
        (0.5, 0.5),
        (0.2, 0.3, 0.5),
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (0.1, 0.2, 0.3, 0.4),
    ],
)
def test_inverse_map_round_trips(weights: tuple[float, ...]) -> None:
    uniforms = uniforms_from_weights(weights)
    assert all(0.0 <= u <= 1.0 for u in uniforms)
    np.testing.assert_allclose(weights_from_uniforms(uniforms), weights, atol=1e-12)


def test_out_of_range_uniform_is_rejected() -> None:
    with pytest.raises(ValueError, match="u_0"):
        weights_from_uniforms([1.5])


def test_single_sft_model_has_no_weight_parameter() -> None:
    space = SearchSpace(n_sft=1, alpha_bounds=(0.0, 1.0))
    assert space.param_names == ["alpha"]
    assert space.candidate({"alpha": 0.3}) == Candidate((1.0,), 0.3)


def test_fixed_weights_have_no_weight_parameter() -> None:
    space = SearchSpace(n_sft=2, alpha_bounds=(0.0, 1.0), fixed_weights=(0.7, 0.3))
    assert space.param_names == ["alpha"]
    assert space.candidate({"alpha": 0.5}).weights == (0.7, 0.3)
    assert not space.contains(Candidate((0.5, 0.5), 0.5))
    assert space.baseline_problem() is not None


def test_params_encode_and_decode_candidates() -> None:
    space = SearchSpace(n_sft=3, alpha_bounds=(0.0, 0.8))
    candidate = Candidate((0.2, 0.3, 0.5), 0.4)
    params = space.params(candidate)
    assert set(params) == {"alpha", "u_0", "u_1"}
    decoded = space.candidate(params)
    np.testing.assert_allclose(decoded.weights, candidate.weights)
    assert decoded.alpha == 0.4
    with pytest.raises(ValueError, match="outside"):
        space.params(Candidate((0.2, 0.3, 0.5), 0.9))


def test_define_by_run_suggest_samples_inside_the_space() -> None:
    space = SearchSpace(n_sft=3, alpha_bounds=(0.2, 0.6))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        assert space.contains(space.suggest(trial))
        study.tell(trial, 0.0)


def test_enqueued_seed_points_come_back_exactly() -> None:
    space = SearchSpace(n_sft=3, alpha_bounds=(0.0, 1.0))
    study = optuna.create_study()
    points = space.paper_points() + space.baseline_points()
    for point in points:
        study.enqueue_trial(space.params(point.candidate))
    for point in points:
        trial = study.ask()
        got = space.suggest(trial)
        np.testing.assert_allclose(got.weights, point.candidate.weights, atol=1e-12)
        assert got.alpha == point.candidate.alpha
        study.tell(trial, 0.0)


def test_paper_points_follow_the_bounds() -> None:
    assert [p.candidate.alpha for p in SearchSpace(2, (0.0, 1.0)).paper_points()] == list(
        PAPER_ALPHAS
    )
    clipped = SearchSpace(2, (0.15, 0.6)).paper_points()
    assert [p.candidate.alpha for p in clipped] == [0.2, 0.5]
    assert all(p.candidate.weights == (0.5, 0.5) and p.kind == "paper" for p in clipped)


def test_baselines_are_each_sft_model_alone() -> None:
    points = SearchSpace(3, (0.0, 1.0)).baseline_points()
    assert [p.candidate.weights for p in points] == [
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
    ]
    assert all(p.candidate.alpha == 0.0 and p.kind == "baseline" for p in points)
    assert SearchSpace(2, (0.1, 1.0)).baseline_problem() is not None
    assert SearchSpace(2, (0.0, 1.0)).baseline_problem() is None


def test_dedupe_keeps_the_first_kind() -> None:
    paper = SeedPoint(Candidate((0.5, 0.5), 0.5), "paper")
    explicit = SeedPoint(Candidate((0.5, 0.5), 0.5), "explicit")
    other = SeedPoint(Candidate((0.4, 0.6), 0.5), "explicit")
    assert dedupe_seed_points([paper, explicit, other]) == [paper, other]


def test_grid_covers_alpha_bounds_and_simplex_midpoints() -> None:
    space = SearchSpace(2, (0.0, 0.8))
    grid = space.grid(5)
    assert grid["alpha"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    weights = sorted(space.weights_for({"u_0": u})[0] for u in grid["u_0"])
    assert weights == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert space.grid_size(5) == 25
    assert SearchSpace(3, (0.0, 1.0)).grid_size(3) == 27


def test_grid_sampler_walks_the_whole_grid() -> None:
    space = SearchSpace(2, (0.0, 1.0))
    study = optuna.create_study(sampler=make_sampler("grid", space, seed=0, grid_levels=2))
    seen = set()
    for _ in range(space.grid_size(2)):
        trial = study.ask()
        candidate = space.suggest(trial)
        seen.add((round(candidate.weights[0], 6), candidate.alpha))
        study.tell(trial, 0.0)
    assert seen == {(0.25, 0.0), (0.75, 0.0), (0.25, 1.0), (0.75, 1.0)}


def test_invalid_spaces_are_rejected() -> None:
    with pytest.raises(ValueError):
        SearchSpace(0, (0.0, 1.0))
    with pytest.raises(ValueError):
        SearchSpace(2, (0.8, 0.2))
    with pytest.raises(ValueError):
        SearchSpace(2, (0.0, 1.0), fixed_weights=(1.0,))


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random", "grid"])
def test_every_sampler_runs_a_multi_objective_ask_tell_loop(name: str) -> None:
    space = SearchSpace(2, (0.0, 1.0))
    sampler = make_sampler(name, space, seed=0, grid_levels=2)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for point in space.baseline_points():
        study.enqueue_trial(space.params(point.candidate))
    for _ in range(6):
        trial = study.ask()
        candidate = space.suggest(trial)
        assert space.contains(candidate)
        study.tell(trial, [candidate.alpha, candidate.weights[0]])
    states = {t.state for t in study.trials}
    assert states == {optuna.trial.TrialState.COMPLETE}
    assert space.candidate(study.trials[0].params).weights == (1.0, 0.0)
