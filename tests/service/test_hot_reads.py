"""``GET /sweeps/{id}`` and ``/pareto`` serve the bodies the writes stored, in the shape of the
API's schemas; sweeps without stored bodies are rendered by the routes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine, delete

from service.schemas import ParetoFrontBody, SweepDetail
from service.settings import Settings
from storage import (
    claim_next_sweep,
    count_budget_trials,
    fail_running_trials,
    init_database,
    record_steps,
    replace_front,
    session_scope,
    upsert_trial,
)
from storage.models import SweepView
from storage.views import read_stored
from sweeps.results import update_front
from tests.service.conftest import TOKEN, ModelRoot, live_server

#: What trial 3 (the best benchmark: the recommendation) kept, as sweeps.trial stores it.
_RETAINED = {
    3: {
        "correctness_retention": 0.75,
        # Three seeds that kept their length: the recommendation shows their retention.
        "seeds": [
            {"seed": k, "length_retention": 0.95 + k / 100, "collapsed": False, "diverged": False}
            for k in range(3)
        ],
        "length_forecast": {
            "at_horizon": None,
            "seeds_fitted": 1,
            "seeds": 2,
            "fallback": True,
            "reasons": ["flat length: nothing to fit"],
            "horizon": 48,
        },
    }
}
#: Trial 2 kept its length on every seed, but only just: its seeds do not show it keeps it.
_AT_THE_THRESHOLD = {
    "seeds": [
        {"seed": k, "length_retention": r, "collapsed": False, "diverged": False}
        for k, r in enumerate((0.56, 0.53, 0.52))
    ]
}
_FORGOT = {3: {"forgetting_init": 0.1, "after": [{"forgetting": 0.2}, {"forgetting": 0.4}]}}


def _write_a_sweep(engine: Engine, sweep_id: str) -> None:
    """What a worker writes: a claim, complete, failed and running trials, steps, a front."""
    with session_scope(engine) as session:
        claim_next_sweep(session, worker_id="w1")
        for number in range(4):
            upsert_trial(
                session,
                sweep_id=sweep_id,
                number=number,
                weights=[0.5 + number / 10, 0.5 - number / 10],
                alpha=number / 4,
                seed_kind="paper" if number == 0 else None,
                state="complete",
                objectives={"stability": 0.9 - number / 5, "benchmark": 0.2 + number / 10},
                stability={
                    "score": 0.9 - number / 5,
                    **_RETAINED.get(number, {}),
                    **(_AT_THE_THRESHOLD if number == 2 else {}),
                },
                benchmarks=_FORGOT.get(number),
                duration_s=12.5,
            )
        upsert_trial(session, sweep_id=sweep_id, number=4, weights=[1.0, 0.0], alpha=0.1)
        upsert_trial(session, sweep_id=sweep_id, number=5, weights=[0.0, 1.0], alpha=0.9)
        record_steps(
            session,
            sweep_id=sweep_id,
            trial_number=4,
            steps=[{"step": s, "reward_mean": 0.1 * s, "kl": 0.01, "clip": 0.2} for s in range(3)],
        )
        update_front(session, sweep_id=sweep_id)


def test_stored_bodies_round_trip_through_the_schemas(
    service_settings: Callable[..., Settings], model_root: ModelRoot
) -> None:
    settings = service_settings()
    with live_server(settings) as base, httpx.Client(base_url=base) as client:
        sweep_id = client.post("/sweeps", json=model_root.spec(name="hot")).json()["id"]
        engine = init_database(settings.resolved_database_url)
        _write_a_sweep(engine, sweep_id)

        detail = client.get(f"/sweeps/{sweep_id}")
        pareto = client.get(f"/sweeps/{sweep_id}/pareto")
        assert detail.status_code == pareto.status_code == 200
        assert detail.headers["content-type"] == "application/json"
        assert detail.text == read_stored(engine, sweep_id, "summary")
        assert pareto.text == read_stored(engine, sweep_id, "pareto")
        # Exactly what the schemas would write: no field missing, added or formatted apart.
        assert SweepDetail.model_validate_json(detail.text).model_dump_json() == detail.text
        assert ParetoFrontBody.model_validate_json(pareto.text).model_dump_json() == pareto.text
        body = detail.json()
        assert body["progress"]["completed"] == 4 and body["progress"]["running"] == 2
        assert body["running_trials"][0]["latest_step"]["extra"] == {"clip": 0.2}
        front = pareto.json()
        assert front["members"] and front["hypervolume_interval"] is not None
        # What the report shows of what a policy kept, under the report's names.
        members = {m["trial_number"]: m for m in front["members"]}
        assert members[3]["correctness_retention"] == 0.75
        assert members[3]["forgetting"] == pytest.approx(
            {"forgetting_init": 0.1, "forgetting_after": 0.3}
        )
        assert members[0]["forgetting"] == {} and members[0]["correctness_retention"] is None
        # How its forecast came about (a forecast objective's fallback), under the same name.
        assert members[3]["forecasts"] == {
            "length_at_horizon": {
                "seeds_fitted": 1,
                "seeds": 2,
                "fallback": True,
                "reasons": ["flat length: nothing to fit"],
                "horizon": 48,
            }
        }
        assert members[0]["forecasts"] == {}
        recommended = front["recommendation"]
        assert recommended["trial_number"] == 3
        assert recommended["forgetting"] == members[3]["forgetting"]
        assert recommended["correctness_retention"] == 0.75
        assert recommended["forecasts"] == members[3]["forecasts"]
        assert recommended["runner_up"]["correctness_retention"] is None
        assert (recommended["seeds"], recommended["collapsed_seeds"]) == (3, 0)
        assert recommended["length_retention"]["mean"] == pytest.approx(0.96)
        # Trial 2's seeds sit at the collapse threshold: named, not recommended.
        assert [t["trial_number"] for t in front["gated_out"]] == [2]
        assert front["gated_out"][0]["length_retention"]["low"] < 0.5
        assert (recommended["runner_up"]["seeds"], recommended["runner_up"]["collapsed_seeds"]) == (
            1,
            0,
        )

        # Sweeps stored before the views, and fronts stored without statistics: the routes
        # render the same bodies.
        with session_scope(engine) as session:
            session.execute(delete(SweepView).where(SweepView.sweep_id == sweep_id))
        assert read_stored(engine, sweep_id, "summary") is None
        assert client.get(f"/sweeps/{sweep_id}").text == detail.text
        assert client.get(f"/sweeps/{sweep_id}/pareto").text == pareto.text
        with session_scope(engine) as session:
            replace_front(
                session,
                sweep_id=sweep_id,
                members=[m["trial_number"] for m in front["members"]],
                hypervolume=front["hypervolume"],
                reference_point=front["reference_point"],
            )
        assert read_stored(engine, sweep_id, "pareto") is None
        again = client.get(f"/sweeps/{sweep_id}/pareto").json()
        assert again["revision"] == front["revision"] + 1
        for key in (
            "members",
            "tied",
            "hypervolume_interval",
            "infeasible",
            "recommendation",
            "gated_out",
        ):
            assert again[key] == front[key]

        missing = client.get("/sweeps/000000000000")
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
        assert client.get("/sweeps/000000000000/pareto").status_code == 404
        assert client.get("/sweeps/not%20an%20id").status_code == 422
        assert client.get("/sweeps/" + "a" * 33 + "/pareto").status_code == 422


def test_progress_after_a_resume_counts_the_budget(
    service_settings: Callable[..., Settings], model_root: ModelRoot
) -> None:
    """Interrupted trials are re-run on resume: REST's ``finished`` is the runner's count."""
    settings = service_settings()
    with live_server(settings) as base, httpx.Client(base_url=base) as client:
        sweep_id = client.post("/sweeps", json=model_root.spec(name="resumed")).json()["id"]
        engine = init_database(settings.resolved_database_url)
        _write_a_sweep(engine, sweep_id)
        with session_scope(engine) as session:  # the worker was lost
            fail_running_trials(session, sweep_id=sweep_id, error="interrupted: worker lost")
        progress = client.get(f"/sweeps/{sweep_id}").json()["progress"]
        with session_scope(engine, read_only=True) as session:
            budget = count_budget_trials(session, sweep_id=sweep_id)
        assert progress["finished"] == budget == 4
        assert progress["interrupted"] == 2 and progress["failed"] == 2
        assert progress["running"] == 0


def test_hot_reads_need_the_token_when_reads_do(
    service_settings: Callable[..., Settings], model_root: ModelRoot
) -> None:
    settings = service_settings(api_token=TOKEN, read_token_required=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with live_server(settings) as base, httpx.Client(base_url=base) as client:
        created = client.post("/sweeps", json=model_root.spec(name="guarded"), headers=auth)
        sweep_id = created.json()["id"]
        for path in (f"/sweeps/{sweep_id}", f"/sweeps/{sweep_id}/pareto"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
            assert client.get(path, headers=auth).status_code == 200
