"""Privacy finding 9: the local push hub limits token requests and failed authentications per
client address (429, Ably error 42910), as the API does."""

from __future__ import annotations

from fastapi.testclient import TestClient

from instore.settings import Settings
from mobile_push.local_hub.app import create_app
from mobile_push.local_hub.tokens import ApiKey, sign_token_request


def _hub(**limits: int) -> tuple[TestClient, ApiKey]:
    settings = Settings(_env_file=None, **limits)  # type: ignore[arg-type]
    return TestClient(create_app(settings)), ApiKey.parse(settings.ably_key)


def test_token_requests_past_the_rate_get_429() -> None:
    client, key = _hub(hub_token_rate_per_min=3)
    codes = []
    for _ in range(5):
        body = sign_token_request(key, capability={"shopper:u1": ["subscribe"]}, client_id="u1")
        codes.append(client.post(f"/keys/{key.name}/requestToken", json=body).status_code)
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]
    r = client.post(f"/keys/{key.name}/requestToken", json=sign_token_request(key))
    assert r.headers["X-Ably-ErrorCode"] == "42910"
    assert client.get("/health").status_code == 200  # other routes are not counted


def test_failed_authentications_lock_the_client_out() -> None:
    client, key = _hub(hub_auth_failures_per_min=2)
    for _ in range(2):
        r = client.get("/channels/shopper:u1/messages", headers={"Authorization": "Bearer nope"})
        assert r.status_code in (401, 403)
    r = client.get("/channels/shopper:u1/messages", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 429
    r = client.post(f"/keys/{key.name}/requestToken", json=sign_token_request(key))
    assert r.status_code == 429  # every request with a credential, until the budget refills
    assert client.get("/health").status_code == 200  # no credential: open
