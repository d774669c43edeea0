"""The push hub refuses what Ably refuses: a wrong key (401), a token used on another
shopper's channel (403), an expired or forged token (401)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import httpx
import pytest
from ably import AblyRest
from ably.types.message import Message
from ably.util.exceptions import AblyException

from instore.ably import make_rest
from mobile_push.local_hub.sse_client import Subscription, request_token
from mobile_push.local_hub.tokens import ApiKey, sign_token_request
from tests.push_hub import running_hub

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(kafka_bootstrap, redis_url, tmp_path_factory):
    with running_hub(tmp_path_factory, "hub-sec", kafka_bootstrap, redis_url) as h:
        yield h


def token_for(hub, channel: str, ops=("subscribe", "history"), ttl_ms: int | None = None) -> str:
    tr = sign_token_request(
        hub["key"], capability={channel: list(ops)}, client_id="shopper", ttl_ms=ttl_ms
    )
    return request_token(hub["base"], tr)["token"]


def rest_with_key(hub, key: str) -> AblyRest:
    return make_rest(hub["settings"], key=key)


def test_wrong_key_is_refused_with_401(hub):
    async def publish_with_wrong_secret() -> AblyException:
        rest = rest_with_key(hub, f"{hub['key'].name}:not-the-secret")
        try:
            await rest.channels.get("shopper:x").publish("offer", {"a": 1})
        except AblyException as exc:
            return exc
        finally:
            await rest.close()
        raise AssertionError("publish with a wrong key succeeded")

    exc = asyncio.run(publish_with_wrong_secret())
    assert exc.status_code == 401 and exc.code == 40101

    # Basic auth with a wrong secret, and an unknown key name, straight over HTTP.
    bad = base64.b64encode(f"{hub['key'].name}:nope".encode()).decode()
    r = httpx.post(
        f"{hub['base']}/channels/shopper:x/messages",
        json={"name": "offer", "data": "x"},
        headers={"Authorization": f"Basic {bad}"},
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 40101 and r.json()["error"]["statusCode"] == 401
    other = ApiKey.parse("other.app:secret")
    r = httpx.post(f"{hub['base']}/keys/other.app/requestToken", json=sign_token_request(other))
    assert r.status_code == 401
    r = httpx.get(f"{hub['base']}/channels/shopper:x/messages")
    assert r.status_code == 401


def test_replayed_token_request_is_refused(hub):
    tr = sign_token_request(hub["key"], capability={"shopper:a": ["subscribe"]})
    assert (
        httpx.post(f"{hub['base']}/keys/{tr['keyName']}/requestToken", json=tr).status_code == 200
    )
    again = httpx.post(f"{hub['base']}/keys/{tr['keyName']}/requestToken", json=tr)
    assert again.status_code == 401 and again.json()["error"]["code"] == 40105


def test_token_for_another_shopper_is_refused_with_403(hub):
    a, b = f"shopper:{uuid.uuid4().hex[:6]}", f"shopper:{uuid.uuid4().hex[:6]}"
    token = token_for(hub, a)
    auth = {"Authorization": f"Bearer {token}"}
    # Own channel: fine.
    assert httpx.get(f"{hub['base']}/channels/{a}/messages", headers=auth).status_code == 200
    # Another shopper's channel: history, stream and publish are all refused.
    for r in (
        httpx.get(f"{hub['base']}/channels/{b}/messages", headers=auth),
        httpx.get(f"{hub['base']}/channels/{b}/stream", params={"accessToken": token}),
        httpx.post(
            f"{hub['base']}/channels/{b}/messages", headers=auth, json={"name": "x", "data": "y"}
        ),
        # A subscribe-only token cannot publish even on its own channel.
        httpx.post(
            f"{hub['base']}/channels/{a}/messages", headers=auth, json={"name": "x", "data": "y"}
        ),
    ):
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == 40160
    # A token request asking for more than the key may grant is narrowed, never widened.
    wide = sign_token_request(hub["key"], capability={"*": ["subscribe"]})
    details = request_token(hub["base"], wide)
    assert details["capability"] == '{"*":["subscribe"]}'


def test_expired_and_forged_tokens_are_refused_with_401(hub):
    channel = f"shopper:{uuid.uuid4().hex[:6]}"
    token = token_for(hub, channel, ttl_ms=1500)
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{hub['base']}/channels/{channel}/messages", headers=auth).status_code == 200

    # An open stream is closed with Ably's token-expired error when the token runs out.
    got: list = []
    sub = Subscription(hub["base"], channel, token, lambda m, _t: got.append(m)).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sub.error is None:
        time.sleep(0.1)
    sub.stop()
    assert sub.error is not None and sub.error["error"]["code"] == 40142

    r = httpx.get(f"{hub['base']}/channels/{channel}/messages", headers=auth)
    assert r.status_code == 401 and r.json()["error"]["code"] == 40142
    r = httpx.get(f"{hub['base']}/channels/{channel}/stream", params={"accessToken": token})
    assert r.status_code == 401 and r.json()["error"]["code"] == 40142

    # A token whose capability was edited no longer verifies.
    body, _, sig = token_for(hub, channel).partition(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(
        channel.encode(), b"*"
    )
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + sig
    r = httpx.get(
        f"{hub['base']}/channels/{channel}/messages", headers={"Authorization": f"Bearer {forged}"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == 40140


def test_sdk_renews_its_token_and_keeps_publishing(hub):
    """The sink's SDK client holds a short-lived token; after expiry the hub answers 40142 and
    the SDK fetches a new token by itself."""

    async def go() -> list:
        rest = make_rest(hub["settings"], default_token_params={"ttl": 1000})
        ch = rest.channels.get(f"shopper:{uuid.uuid4().hex[:6]}")
        try:
            await ch.publish(Message(name="offer", data="1", id="r-1"))
            await asyncio.sleep(1.5)
            await ch.publish(Message(name="offer", data="2", id="r-2"))
            return [m.id for m in (await ch.history()).items]
        finally:
            await rest.close()

    assert asyncio.run(go()) == ["r-2", "r-1"]
