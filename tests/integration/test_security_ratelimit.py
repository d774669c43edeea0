"""Rate limits on the real API app: token and registration routes, and credential guessing,
answer 429 with Retry-After once a client's budget is spent; other clients' calls and correct
credentials of a client that is not guessing keep working."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from instore.settings import DEV_KEYS, Settings
from tests.conftest import make_settings
from tests.integration.api_harness import bearer, clear_rate_limits, client, unique  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return make_settings(kafka_bootstrap, redis_url, api_token_rate_per_min=5,
                         api_auth_failures_per_min=4)


def test_registration_route_is_rate_limited(client) -> None:  # noqa: F811
    codes = [client.post(f"/shoppers/{unique('rl')}/consent", json={"opted_in": True}).status_code
             for _ in range(8)]
    assert codes[:5] == [200] * 5 or all(c in (200, 201) for c in codes[:5]), codes
    assert codes[5:] == [429, 429, 429]
    res = client.post(f"/shoppers/{unique('rl')}/consent", json={"opted_in": True})
    assert res.status_code == 429 and int(res.headers["Retry-After"]) >= 1
    # Another token route has its own budget.
    assert client.post("/kiosks/s1/k1/ably-token",
                       headers={"X-API-Key": DEV_KEYS["kiosk"]}).status_code != 429


def test_guessing_keys_is_rate_limited(client) -> None:  # noqa: F811
    ok = client.get("/promotions", headers={"X-API-Key": DEV_KEYS["marketer"]})
    assert ok.status_code == 200
    codes = [client.get("/promotions", headers={"X-API-Key": f"guess-{i}"}).status_code
             for i in range(6)]
    assert codes[:4] == [401] * 4 and codes[4:] == [429, 429], codes
    # Forged shopper tokens count as guesses too, and the client is now locked out.
    res = client.get("/shoppers/u1/offers", headers=bearer("u1.9999999999.forged"))
    assert res.status_code == 429 and "guess" not in res.text


def test_api_processes_spend_one_budget(api_settings: Settings) -> None:
    """Two API apps (as two processes behind a load balancer) count in the same Redis window:
    five registrations between them, then 429 from either."""
    clear_rate_limits(api_settings)
    with TestClient(create_app(api_settings)) as a, TestClient(create_app(api_settings)) as b:
        codes = [
            (a if i % 2 else b)
            .post(f"/shoppers/{unique('shared')}/consent", json={"opted_in": True})
            .status_code
            for i in range(7)
        ]
    assert all(c in (200, 201) for c in codes[:5]), codes
    assert codes[5:] == [429, 429], codes
