"""REST API against a live uvicorn: accepted specs, rejected inputs (nothing queued), auth."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.schemas import SWEEP_SPEC_EXAMPLE
from sweeps.spec import SweepSpec
from tests.service.conftest import TOKEN, ModelRoot

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _queued(client: httpx.Client, **kwargs: object) -> int:
    response = client.get("/sweeps", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["total"]


@pytest.fixture
def nothing_queued(open_api: httpx.Client) -> Iterator[None]:
    """Fail the test if it queued a sweep."""
    before = _queued(open_api)
    yield
    assert _queued(open_api) == before, "a rejected request queued a sweep"


def _reject(client: httpx.Client, response: httpx.Response, status: int, *needles: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for needle in needles:
        assert needle in detail, detail
    return detail


def test_healthz(open_api: httpx.Client) -> None:
    response = open_api.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_documents_every_route_with_examples(open_api: httpx.Client) -> None:
    spec = open_api.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/sweeps", "post"),
        ("/sweeps", "get"),
        ("/sweeps/{sweep_id}", "get"),
        ("/sweeps/{sweep_id}/cancel", "post"),
        ("/sweeps/{sweep_id}/trials", "get"),
        ("/sweeps/{sweep_id}/trials/{number}", "get"),
        ("/sweeps/{sweep_id}/pareto", "get"),
        ("/sweeps/{sweep_id}/report", "get"),
        ("/healthz", "get"),
    ]:
        operation = paths[path][method]
        assert operation["summary"] and operation.get("description"), (path, method)
    examples = paths["/sweeps"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        SweepSpec.model_validate(example["value"])  # the documented examples are valid
    assert SweepSpec.model_validate(SWEEP_SPEC_EXAMPLE)
    schemas = spec["components"]["schemas"]
    for name in ("SweepDetail", "ParetoFrontBody", "SweepCreated", "StepMetrics"):
        assert schemas[name].get("examples"), name
    assert "BearerToken" in spec["components"]["securitySchemes"]


def test_create_sweep_is_accepted_and_queued(open_api: httpx.Client, model_root: ModelRoot) -> None:
    before = _queued(open_api)
    response = open_api.post("/sweeps", json=model_root.spec(name="accepted"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["id"]
    assert _queued(open_api) == before + 1
    detail = open_api.get(f"/sweeps/{body['id']}").json()
    assert detail["status"] == "queued"
    assert detail["progress"] == {
        "total": 6,
        "completed": 0,
        "failed": 0,
        "pruned": 0,
        "running": 0,
        "interrupted": 0,
        "finished": 0,
    }
    assert detail["front"] is None and detail["running_trials"] == []
    assert detail["spec"]["models"]["base"] == str(model_root.base.resolve())
    pareto = open_api.get(f"/sweeps/{body['id']}/pareto").json()
    assert pareto["members"] == [] and pareto["revision"] == 0
    assert [o["name"] for o in pareto["objectives"]] == ["stability", "benchmark"]
    assert open_api.get(f"/sweeps/{body['id']}/trials").json()["items"] == []
    # Cancelling a queued sweep cancels it at once; again is a no-op.
    for _ in range(2):
        cancelled = open_api.post(f"/sweeps/{body['id']}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"


def test_relative_paths_resolve_against_the_first_root(
    open_api: httpx.Client, model_root: ModelRoot
) -> None:
    spec = model_root.spec(name="relative")
    spec["models"]["base"] = "base"
    spec["models"]["sft"] = ["sft0", "./sft1"]
    response = open_api.post("/sweeps", json=spec)
    assert response.status_code == 202, response.text
    stored = open_api.get(f"/sweeps/{response.json()['id']}").json()["spec"]["models"]
    assert stored["base"] == str(model_root.base.resolve())
    assert stored["sft"] == [str(model_root.sft_a.resolve()), str(model_root.sft_b.resolve())]


@pytest.mark.usefixtures("nothing_queued")
def test_malformed_json(open_api: httpx.Client) -> None:
    response = open_api.post(
        "/sweeps", content=b'{"name": "x", models: }', headers={"content-type": "application/json"}
    )
    _reject(open_api, response, 422, "malformed JSON")


@pytest.mark.usefixtures("nothing_queued")
def test_body_not_an_object(open_api: httpx.Client) -> None:
    _reject(open_api, open_api.post("/sweeps", json=[1, 2]), 422)
    _reject(open_api, open_api.post("/sweeps"), 422)


@pytest.mark.usefixtures("nothing_queued")
def test_unknown_fields(open_api: httpx.Client, model_root: ModelRoot) -> None:
    response = open_api.post("/sweeps", json=model_root.spec(colour="blue"))
    _reject(open_api, response, 422, "colour", "Extra inputs are not permitted")
    spec = model_root.spec()
    spec["search"]["alpah"] = [0, 1]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "search.alpah")


@pytest.mark.usefixtures("nothing_queued")
@pytest.mark.parametrize("alpha", [[0.0, 1.5], [-0.1, 0.5], [0.8, 0.2]])
def test_alpha_out_of_range(open_api: httpx.Client, model_root: ModelRoot, alpha: list) -> None:
    spec = model_root.spec()
    spec["search"]["alpha"] = alpha
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "search.alpha", "alpha bounds")


@pytest.mark.usefixtures("nothing_queued")
def test_weights_not_summing_to_one(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec()
    spec["search"]["weights"] = [0.7, 0.7]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "search.weights", "sum to 1")
    spec = model_root.spec()
    spec["search"]["seed_points"] = [{"weights": [0.2, 0.2], "alpha": 0.5}]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "sum to 1")


@pytest.mark.usefixtures("nothing_queued")
def test_a_forecast_objective_on_a_probe_too_short_to_fit(
    open_api: httpx.Client, model_root: ModelRoot
) -> None:
    spec = model_root.spec(objectives=["stability", "length_at_horizon"])  # probe.steps 2
    _reject(
        open_api,
        open_api.post("/sweeps", json=spec),
        422,
        "probe.steps: 2 updates are too few for the forecast objective length_at_horizon",
    )
    spec["probe"] = {**spec["probe"], "steps": 6, "forecast_horizon": 5}
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "forecast_horizon (5)")


@pytest.mark.usefixtures("nothing_queued")
def test_path_outside_the_roots(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec()
    spec["models"]["base"] = str(model_root.foreign)
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "models.base", "outside")
    spec = model_root.spec()
    spec["models"]["prompts"] = "/etc/passwd"
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "models.prompts", "outside")


@pytest.mark.usefixtures("nothing_queued")
@pytest.mark.parametrize(
    "path", ["../outside/secret-model", "sft0/../../outside/secret-model", "{root}/../outside"]
)
def test_dotdot_traversal(open_api: httpx.Client, model_root: ModelRoot, path: str) -> None:
    spec = model_root.spec()
    spec["models"]["sft"] = [str(model_root.sft_a), path.format(root=model_root.root)]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "models.sft[1]", "outside")


@pytest.mark.usefixtures("nothing_queued")
def test_symlink_escaping_the_root(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec()
    spec["models"]["reward"] = str(model_root.root / "escape")
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "models.reward", "outside")


@pytest.mark.usefixtures("nothing_queued")
def test_outside_answer_does_not_reveal_existence(
    open_api: httpx.Client, model_root: ModelRoot
) -> None:
    details = []
    for path in (model_root.foreign, model_root.outside / "no-such-model"):
        spec = model_root.spec()
        spec["models"]["base"] = str(path)
        details.append(_reject(open_api, open_api.post("/sweeps", json=spec), 422, "outside"))
    assert "does not exist" not in " ".join(details)


@pytest.mark.usefixtures("nothing_queued")
def test_missing_path_and_wrong_kind(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec()
    spec["models"]["base"] = str(model_root.root / "nope")
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "models.base", "does not exist")
    spec = model_root.spec()
    spec["models"]["prompts"] = str(model_root.base)
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "models.prompts", "not a file")


@pytest.mark.usefixtures("nothing_queued")
def test_incompatible_checkpoints(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec()
    spec["models"]["sft"] = [str(model_root.sft_a), str(model_root.incompatible)]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "shape", "wide")
    spec["models"]["sft"] = [str(model_root.other_arch), str(model_root.sft_b)]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "mismatch", "qwen")


@pytest.mark.usefixtures("nothing_queued")
def test_unknown_benchmark_task(open_api: httpx.Client, model_root: ModelRoot) -> None:
    spec = model_root.spec(benchmarks={"tasks": ["bai_facts_mc", "no_such_task"], "limit": 2})
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "no_such_task", "bai_facts_mc")


def test_include_path_tasks(open_api: httpx.Client, model_root: ModelRoot) -> None:
    tasks = model_root.root / "my-tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "mine.yaml").write_text("task: my_task\ndataset_path: json\n")
    before = _queued(open_api)
    spec = model_root.spec(
        benchmarks={"tasks": ["my_task"], "report": [], "include_path": str(model_root.outside)}
    )
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "include_path", "outside")
    spec["benchmarks"]["include_path"] = "my-tasks"
    spec["benchmarks"]["tasks"] = ["not_mine"]
    _reject(open_api, open_api.post("/sweeps", json=spec), 422, "not_mine", "my_task")
    assert _queued(open_api) == before
    spec["benchmarks"]["tasks"] = ["my_task", "bai_facts_mc"]
    created = open_api.post("/sweeps", json=spec)
    assert created.status_code == 202, created.text
    stored = open_api.get(f"/sweeps/{created.json()['id']}").json()["spec"]["benchmarks"]
    assert stored["include_path"] == [str(tasks.resolve())]


def test_nonexistent_ids(open_api: httpx.Client) -> None:
    for path in (
        "/sweeps/000000000000",
        "/sweeps/000000000000/trials",
        "/sweeps/000000000000/trials/0",
        "/sweeps/000000000000/pareto",
        "/sweeps/000000000000/report",
    ):
        _reject(open_api, open_api.get(path), 404, "not found")
    _reject(open_api, open_api.post("/sweeps/000000000000/cancel"), 404, "not found")


def test_bad_query_and_path_parameters(open_api: httpx.Client) -> None:
    _reject(open_api, open_api.get("/sweeps", params={"limit": 0}), 422, "query limit")
    _reject(open_api, open_api.get("/sweeps", params={"status": "sleeping"}), 422, "query status")
    _reject(open_api, open_api.get("/sweeps/abc/trials/-1"), 422, "path number")
    _reject(open_api, open_api.get("/sweeps/a.b"), 422, "path sweep_id")


def test_pagination(open_api: httpx.Client, model_root: ModelRoot) -> None:
    ids = [
        open_api.post("/sweeps", json=model_root.spec(name=f"page-{i}")).json()["id"]
        for i in range(3)
    ]
    total = _queued(open_api)
    first = open_api.get("/sweeps", params={"limit": 2}).json()
    second = open_api.get("/sweeps", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == total
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]  # newest first
    assert second["items"][0]["id"] == ids[0]
    named = open_api.get("/sweeps", params={"name": "page-1"}).json()
    assert [item["id"] for item in named["items"]] == [ids[1]]
    queued = open_api.get("/sweeps", params={"status": "queued"}).json()
    assert set(ids) <= {item["id"] for item in queued["items"]}


def test_auth_enforced_on_every_endpoint(guarded_api: httpx.Client, model_root: ModelRoot) -> None:
    calls = [
        ("POST", "/sweeps"),
        ("GET", "/sweeps"),
        ("GET", "/sweeps/000000000000"),
        ("POST", "/sweeps/000000000000/cancel"),
        ("GET", "/sweeps/000000000000/trials"),
        ("GET", "/sweeps/000000000000/trials/0"),
        ("GET", "/sweeps/000000000000/pareto"),
        ("GET", "/sweeps/000000000000/report"),
    ]
    body = model_root.spec(name="guarded")
    for method, path in calls:
        json = body if method == "POST" else None
        missing = guarded_api.request(method, path, json=json)
        _reject(guarded_api, missing, 401, "missing bearer token")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong_scheme = guarded_api.request(
            method, path, json=json, headers={"Authorization": f"Basic {TOKEN}"}
        )
        _reject(guarded_api, wrong_scheme, 401)
        wrong = guarded_api.request(
            method, path, json=json, headers={"Authorization": "Bearer " + "x" * len(TOKEN)}
        )
        _reject(guarded_api, wrong, 403, "invalid bearer token")
    assert guarded_api.get("/sweeps", headers=HEADERS).json()["total"] == 0
    created = guarded_api.post("/sweeps", json=body, headers=HEADERS)
    assert created.status_code == 202, created.text
    sweep_id = created.json()["id"]
    assert guarded_api.get(f"/sweeps/{sweep_id}", headers=HEADERS).status_code == 200
    assert guarded_api.post(f"/sweeps/{sweep_id}/cancel", headers=HEADERS).status_code == 202
    assert guarded_api.get("/healthz").status_code == 200  # liveness stays open


def test_reads_open_when_only_writes_are_guarded(service_settings, model_root: ModelRoot) -> None:
    from tests.service.conftest import live_server

    with live_server(service_settings(api_token=TOKEN)) as base, httpx.Client(base_url=base) as c:
        assert c.get("/sweeps").status_code == 200
        _reject(c, c.post("/sweeps", json=model_root.spec()), 401)
        _reject(c, c.post("/sweeps/000000000000/cancel"), 401)
        assert c.post("/sweeps", json=model_root.spec(), headers=HEADERS).status_code == 202
