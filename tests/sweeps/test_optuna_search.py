"""BaiOptunaSearch tells Optuna the right state for every way a Tune trial can end."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from sweeps._optuna_search import BaiOptunaSearch, verdict_for
from sweeps.search_space import SearchSpace, make_sampler

OBJECTIVES = ["stability", "benchmark"]


def _final(stability: float | None = 0.5, benchmark: float | None = 0.4) -> dict:
    result: dict = {"final": True}
    if stability is not None:
        result["objectives/stability"] = stability
    if benchmark is not None:
        result["objectives/benchmark"] = benchmark
    return result


@pytest.mark.parametrize(
    ("result", "error", "state", "reason"),
    [
        (_final(), False, TrialState.COMPLETE, None),
        (_final(benchmark=None), False, TrialState.FAIL, "final metrics miss benchmark"),
        (_final(stability=math.nan), False, TrialState.FAIL, "stability is not finite"),
        ({"probe_step/step": 3}, False, TrialState.PRUNED, "stopped before its final metrics"),
        (None, False, TrialState.PRUNED, "stopped before its final metrics"),
        ({"error": "TrialFailedError: probe diverged"}, True, TrialState.FAIL, "probe diverged"),
        (None, True, TrialState.FAIL, "see the Ray logs"),
        (_final(), True, TrialState.FAIL, "see the Ray logs"),
    ],
)
def test_verdicts(result: dict | None, error: bool, state: TrialState, reason: str | None) -> None:
    verdict = verdict_for(result, error=error, objectives=OBJECTIVES)
    assert verdict.state is state
    if reason is None:
        assert verdict.reason is None and verdict.values == [0.5, 0.4]
    else:
        assert reason in verdict.reason and verdict.values is None


def _searcher(tmp_path, decorated: list) -> BaiOptunaSearch:
    space = SearchSpace(2, (0.0, 1.0))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")

    def before_tell(trial_id, ot_trial, verdict, result):
        ot_trial.set_user_attr("decorated", True)
        decorated.append((trial_id, verdict.state))

    return BaiOptunaSearch(
        lambda trial: {"weights": list(space.suggest(trial).weights)},
        objectives=OBJECTIVES,
        directions=["maximize", "maximize"],
        sampler=make_sampler("random", space, seed=0),
        storage=storage,
        study_name="unit",
        before_tell=before_tell,
    )


def test_no_trial_stays_running(tmp_path) -> None:
    decorated: list = []
    searcher = _searcher(tmp_path, decorated)
    for trial_id in "abcdef":
        config = searcher.suggest(trial_id)
        assert set(config) == {"alpha", "u_0", "weights"}
    # a: completes; b: per-step results then an error; c: stopped by a scheduler after a
    # step; d: final result lacks an objective; e and f: never told (stop_all).
    searcher.on_trial_result("a", {"probe_step/step": 1})
    searcher.on_trial_result("a", _final())
    searcher.on_trial_complete("a", result=_final())
    searcher.on_trial_result("b", {"probe_step/step": 1})
    searcher.on_trial_result("b", {"error": "RuntimeError: boom"})
    searcher.on_trial_complete("b", error=True)
    searcher.on_trial_result("c", {"probe_step/step": 1})
    searcher.on_trial_complete("c", result={"probe_step/step": 1, "done": True})
    searcher.on_trial_complete("d", result=_final(stability=None))
    searcher.on_trial_complete("a", result=_final())  # a duplicate completion is ignored
    assert searcher.finish_unfinished(TrialState.PRUNED, "cancelled") == ["e", "f"]

    trials = searcher.study.get_trials()
    states = [t.state for t in trials]
    assert states == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.PRUNED,
        TrialState.PRUNED,
    ]
    assert trials[0].values == [0.5, 0.4]
    assert trials[1].user_attrs["fail_reason"] == "RuntimeError: boom"
    assert trials[3].user_attrs["fail_reason"] == "final metrics miss stability"
    assert trials[4].user_attrs["fail_reason"] == "cancelled"
    assert all(t.user_attrs.get("decorated") for t in trials)
    assert [tid for tid, _ in decorated] == ["a", "b", "c", "d", "e", "f"]


def test_stock_searcher_leaves_the_trial_running(tmp_path) -> None:
    # The pitfall the subclass fixes: a multi-objective result missing a metric.
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'stock.db'}")
    space = {"alpha": optuna.distributions.FloatDistribution(0.0, 1.0)}
    stock = OptunaSearch(
        space,
        metric=["objectives/stability", "objectives/benchmark"],
        mode=["max", "max"],
        storage=storage,
        study_name="stock",
    )
    stock.suggest("x")
    stock.on_trial_complete("x", result={"objectives/stability": 0.5})
    assert stock._ot_study.get_trials()[0].state is TrialState.RUNNING


def test_tune_links_pickle_without_the_live_run_and_a_copy_refuses_to_run() -> None:
    # Tune cloudpickles its config (callbacks, stopper, searcher hook) into tuner.pkl; a copy
    # run anywhere else (Ray Client runs the Tuner on the head) must fail loudly, not no-op.
    from ray import cloudpickle

    from sweeps._tune_driver import SinkBeforeTell, _SinkCallback, _SinkStopper
    from sweeps.exceptions import SweepRunError

    class Sink:
        stop = True

        def should_stop(self) -> bool:
            return self.stop

    sink = Sink()
    stopper, callback, hook = _SinkStopper(sink), _SinkCallback(sink), SinkBeforeTell(sink)
    assert stopper.stop_all() is True
    for link in (stopper, callback, hook):
        copy = cloudpickle.loads(cloudpickle.dumps(link))
        with pytest.raises(SweepRunError, match="runs away from its recorder"):
            _ = copy.sink
    with pytest.raises(SweepRunError):
        cloudpickle.loads(cloudpickle.dumps(stopper)).stop_all()


def test_storage_calls_are_retried_through_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.exceptions import StorageInternalError

    from sweeps import _optuna_search

    monkeypatch.setattr(_optuna_search.time, "sleep", lambda _s: None)
    failures = [StorageInternalError("server closed the connection")] * 3

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "told"

    assert _optuna_search.retry_storage(flaky, "tell") == "told" and not failures
    with pytest.raises(StorageInternalError):
        _optuna_search.retry_storage(
            lambda: (_ for _ in ()).throw(StorageInternalError("down")), "tell", retry_for=0
        )


def test_resume_fails_orphans_reenqueues_them_seeds_once_and_reseeds(tmp_path) -> None:
    from sweeps._study import INTERRUPTED_ATTR, finished_count, finished_rows, open_study
    from sweeps.spec import SweepSpec

    spec = SweepSpec.parse(
        {
            "name": "resume",
            "models": {"base": "/b", "sft": ["/s1", "/s2"], "reward": "/r", "prompts": "/p"},
            "search": {"n_trials": 5, "seed_points": "baselines", "seed": 7},
        }
    )
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    first = open_study(url, "s", spec)
    assert first.orphans == [] and first.study.metric_names == ["stability", "benchmark"]
    space, study = first.space, first.study
    first_seed = first.sampler_seed()
    # A first run: two trials asked (the two baselines), one finished, then the process died.
    done, orphan = study.ask(), study.ask()
    space.suggest(done), space.suggest(orphan)
    done.set_user_attr("stability/length_retention", 0.9)
    study.tell(done, [0.5, 0.4])
    assert finished_count(study) == 1
    again = open_study(url, "s", spec)
    assert again.orphans == [orphan.number]
    trials = again.study.get_trials()
    assert trials[orphan.number].state is TrialState.FAIL
    assert trials[orphan.number].user_attrs[INTERRUPTED_ATTR] is True
    assert finished_count(again.study) == 1  # the orphan does not use up the budget
    # The orphan's ratios come back first, with its seed kind; the seeds are not enqueued again.
    waiting = again.study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].user_attrs == {"retry_of": orphan.number, "seed_kind": "baseline"}
    assert space.candidate(waiting[0].system_attrs["fixed_params"]).weights == (0.0, 1.0)
    # The sampler continues from the history instead of replaying the first run's stream.
    assert first_seed == 7 + 2  # the two enqueued baselines
    assert again.sampler_seed() == 7 + 3 != first_seed  # two asked, one re-enqueued
    # What Optuna knows of finished trials, to repair our rows after a kill.
    rows = {row["number"]: row for row in finished_rows(again)}
    assert rows[done.number]["objectives"] == {"stability": 0.5, "benchmark": 0.4}
    assert rows[done.number]["stability"] == {"length_retention": 0.9}
    assert rows[done.number]["finished_at"].tzinfo is not None
    assert rows[orphan.number]["state"] == "failed"
    assert rows[orphan.number]["error"].startswith("interrupted")


def test_a_seed_point_killed_before_its_ratios_were_suggested_comes_back(tmp_path) -> None:
    from sweeps._study import INTERRUPTED_ATTR, open_study
    from sweeps.spec import SweepSpec

    spec = SweepSpec.parse(
        {
            "name": "resume",
            "models": {"base": "/b", "sft": ["/s1", "/s2"], "reward": "/r", "prompts": "/p"},
            "search": {"n_trials": 4, "seed_points": [{"alpha": 0.2}]},
        }
    )
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    first = open_study(url, "s", spec)
    # The process died after Optuna's ask popped the seed point, before any suggest: the
    # trial has no params, only the ratios it was enqueued with.
    popped = first.study.ask()
    assert popped.params == {} and popped.user_attrs == {"seed_kind": "explicit"}
    sampled = first.study.ask()  # a sampled trial killed the same way: nothing to retry
    again = open_study(url, "s", spec)
    assert again.orphans == [popped.number, sampled.number]
    trials = again.study.get_trials()
    assert all(trials[n].user_attrs[INTERRUPTED_ATTR] for n in again.orphans)
    (waiting,) = again.study.get_trials(states=(TrialState.WAITING,))
    assert waiting.user_attrs == {"retry_of": popped.number, "seed_kind": "explicit"}
    candidate = again.space.candidate(waiting.system_attrs["fixed_params"])
    assert (candidate.weights, candidate.alpha) == ((0.5, 0.5), 0.2)


def test_a_resumed_sampler_does_not_repropose_finished_candidates(tmp_path) -> None:
    # The check: with a fixed seed, the first proposal after a resume used to equal
    # the first trial before the kill.
    from sweeps._study import open_study
    from sweeps.spec import SweepSpec

    spec = SweepSpec.parse(
        {
            "name": "reseed",
            "models": {"base": "/b", "sft": ["/s1", "/s2"], "reward": "/r", "prompts": "/p"},
            "search": {"n_trials": 6, "seed_points": "none", "sampler": "tpe", "seed": 0},
        }
    )
    url = f"sqlite:///{tmp_path / 'reseed.db'}"

    def run(n: int) -> list[dict]:
        opened = open_study(url, "s", spec)
        study = optuna.load_study(study_name="s", storage=url, sampler=opened.sampler())
        proposed = []
        for _ in range(n):
            trial = study.ask()
            opened.space.suggest(trial)
            study.tell(trial, [0.5, 0.5])
            proposed.append(trial.params)
        return proposed

    before = run(2)
    after = run(2)  # a new process resuming the same study
    assert not any(params in before for params in after)
    # The same seed without the history (what a resume did before) replays the first run.
    fresh = optuna.create_study(
        directions=spec.directions, sampler=make_sampler("tpe", SearchSpace(2, (0.0, 1.0)), seed=0)
    )
    trial = fresh.ask()
    SearchSpace(2, (0.0, 1.0)).suggest(trial)
    assert trial.params == before[0]
