# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""schemathesis over the OpenAPI schema: generated requests (valid and invalid, bounded in
number) against the real server on the real broker and Redis; no 5xx, and every response
conforms to its documented schema. Each operation gets the credentials its policy needs, so
the generated data reaches the handlers instead of stopping at 401."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings

from api.main import create_app
from instore.embedded import free_port
from instore.settings import DEV_KEYS, Settings
from tests.integration.api_harness import api_settings, unique  # noqa: F401
from tests.integration.test_api_auth import POLICY, PUBLIC, S

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]
EXAMPLES = 15


@pytest.fixture(scope="module")
def ksqldb(api_settings: Settings) -> Iterator[str]:
    """The local ksqlDB-compatible endpoint on the module's broker: the analyst's /ksql routes
    reach a real ksqlDB (their 503 when none answers has its own test)."""
    from tests.integration.test_ksql_endpoint import Endpoint

    endpoint = Endpoint(api_settings)
    yield endpoint.url
    endpoint.stop()


@pytest.fixture(scope="module")
def server(api_settings: Settings, ksqldb: str) -> Iterator[str]:
    port = free_port()
    settings_with_ksqldb = api_settings.model_copy(update={"ksqldb_url": ksqldb})
    config = uvicorn.Config(
        create_app(settings_with_ksqldb), host="127.0.0.1", port=port, log_level="warning",
        access_log=False,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def shopper(server: str) -> tuple[str, str]:
    uid = unique("fuzz")
    deadline = time.monotonic() + 60
    while True:  # 503 while the consent view catches up after the server started
        res = httpx.post(f"{server}/shoppers/{uid}/consent", json={"opted_in": True}, timeout=30)
        if res.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res.status_code == 200, res.text
    return uid, res.json()["shopper_token"]


def credentials(method: str, path: str, shopper_token: str) -> dict[str, str]:
    allowed = POLICY.get((method, path), {PUBLIC})
    if S in allowed:
        return {"Authorization": f"Bearer {shopper_token}"}
    for role in ("marketer", "analyst", "ops", "kiosk", "cashier"):
        if role in allowed:
            return {"X-API-Key": DEV_KEYS[role]}
    return {}


# One test per operation, named by its label: the same items in every process, so pytest-xdist
# runs them all (schemathesis' own ``schema.parametrize()`` collapsed to a single test under
# xdist that reached 7 of the 51 operations).
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_errors(operation, server, shopper):
    uid, token = shopper

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        if "uid" in (case.path_parameters or {}) and case.method != "POST":
            case.path_parameters["uid"] = uid  # the shopper's own routes
        headers = credentials(case.method.upper(), case.path, token)
        response = case.call(base_url=server, headers=headers, timeout=30)
        case.validate_response(
            response,
            checks=[
                schemathesis.checks.not_a_server_error,
                schemathesis.checks.response_schema_conformance,
            ],
        )

    check()
