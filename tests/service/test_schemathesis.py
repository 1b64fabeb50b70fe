"""Property-based run of schemathesis against our OpenAPI spec: no 5xx, responses match it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from service.app import create_app
from service.settings import Settings
from storage import create_sweep, init_database, session_scope, upsert_trial
from tests.service.conftest import TOKEN, ModelRoot

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def schema(
    service_settings: Callable[..., Settings], model_root: ModelRoot
) -> schemathesis.schemas.BaseSchema:
    """The schema of an app (token required for writes) whose database holds one sweep."""
    app_settings = service_settings(api_token=TOKEN)
    engine = init_database(app_settings.resolved_database_url)
    with session_scope(engine) as session:
        sweep = create_sweep(session, name="fuzz", spec=model_root.spec(), n_trials=2)
        upsert_trial(session, sweep_id=sweep.id, number=0, weights=[0.5, 0.5], alpha=0.3)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings))


def _operations(schema: schemathesis.schemas.BaseSchema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("authorized", [True, False])
def test_no_server_errors(
    schema: schemathesis.schemas.BaseSchema, mode: GenerationMode, authorized: bool
) -> None:
    operations = _operations(schema)
    assert len(operations) == 9
    headers = {"Authorization": f"Bearer {TOKEN}"} if authorized else None
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path == "/healthz":
            continue  # no parameters: nothing to break

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
