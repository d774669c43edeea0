"""Ably-compatible auth of the push hub: TokenRequest MACs as the SDK signs them, capability
intersection and checks, self-contained tokens."""

from __future__ import annotations

import asyncio
import json

import pytest
from ably import AblyRest
from hypothesis import given
from hypothesis import strategies as st

from mobile_push.local_hub import capability as cap
from mobile_push.local_hub.tokens import ApiKey, AuthError, TokenAuthority, sign_token_request

KEY = ApiKey.parse("app.key:s3cret")
NOW = 1_800_000_000_000


def test_key_parsing():
    assert (KEY.name, KEY.secret) == ("app.key", "s3cret")
    with pytest.raises(ValueError):
        ApiKey.parse("no-secret")


def test_sdk_token_request_verifies_and_yields_the_requested_capability():
    rest = AblyRest(key="app.key:s3cret", endpoint="127.0.0.1", tls=False, fallback_hosts=[])

    async def make():
        req = await rest.auth.create_token_request(
            token_params={
                "capability": {"shopper:ana": ["subscribe", "history"]},
                "client_id": "ana",
                "ttl": 60_000,
            }
        )
        await rest.close()
        return req.to_dict()

    tr = asyncio.run(make())
    authority = TokenAuthority([KEY])
    details = authority.request_token("app.key", tr, now_ms=tr["timestamp"])
    assert details["keyName"] == "app.key"
    assert details["clientId"] == "ana"
    assert details["expires"] - details["issued"] == 60_000
    assert json.loads(details["capability"]) == {"shopper:ana": ["history", "subscribe"]}
    grant = authority.bearer(details["token"], now_ms=tr["timestamp"] + 1)
    grant.require("shopper:ana", "subscribe", now_ms=tr["timestamp"] + 1)
    with pytest.raises(AuthError) as exc:
        grant.require("shopper:bob", "subscribe", now_ms=tr["timestamp"] + 1)
    assert (exc.value.status, exc.value.code) == (403, 40160)


def test_tampered_or_wrong_secret_token_request_is_401():
    authority = TokenAuthority([KEY])
    tr = sign_token_request(ApiKey.parse("app.key:wrong"), capability={"*": ["*"]}, timestamp=NOW)
    with pytest.raises(AuthError) as exc:
        authority.request_token("app.key", tr, now_ms=NOW)
    assert (exc.value.status, exc.value.code) == (401, 40101)
    good = sign_token_request(KEY, capability={"shopper:a": ["subscribe"]}, timestamp=NOW)
    good["capability"] = '{"*":["*"]}'  # widen after signing
    with pytest.raises(AuthError):
        authority.request_token("app.key", good, now_ms=NOW)


def test_stale_timestamp_and_replayed_nonce_are_refused():
    authority = TokenAuthority([KEY])
    old = sign_token_request(KEY, timestamp=NOW - 11 * 60_000)
    with pytest.raises(AuthError) as exc:
        authority.request_token("app.key", old, now_ms=NOW)
    assert exc.value.code == 40104
    tr = sign_token_request(KEY, timestamp=NOW)
    authority.request_token("app.key", tr, now_ms=NOW)
    with pytest.raises(AuthError) as exc:
        authority.request_token("app.key", tr, now_ms=NOW)
    assert exc.value.code == 40105


def test_token_expiry_and_sdk_style_base64_bearer():
    import base64

    authority = TokenAuthority([KEY])
    details = authority.issue(KEY, {"shopper:a": frozenset({"subscribe"})}, None, 1000, NOW)
    b64 = base64.b64encode(details["token"].encode()).decode()
    assert authority.bearer(b64, now_ms=NOW + 10).capability == {"shopper:a": {"subscribe"}}
    with pytest.raises(AuthError) as exc:
        authority.bearer(details["token"], now_ms=NOW + 1000)
    assert (exc.value.status, exc.value.code) == (401, 40142)
    with pytest.raises(AuthError) as exc:
        authority.bearer("garbage", now_ms=NOW)
    assert exc.value.code == 40140


def test_basic_auth():
    import base64

    authority = TokenAuthority([KEY])
    ok = base64.b64encode(b"app.key:s3cret").decode()
    assert authority.basic(ok).capability == {"*": {"*"}}
    with pytest.raises(AuthError):
        authority.basic(base64.b64encode(b"app.key:nope").decode())


def test_capability_intersection_narrows_never_widens():
    key_all = {"*": frozenset({"*"})}
    assert cap.intersect({}, key_all) == key_all
    assert cap.intersect({"shopper:a": frozenset({"subscribe"})}, key_all) == {
        "shopper:a": {"subscribe"}
    }
    key_ns = {"shopper:*": frozenset({"subscribe", "history"})}
    assert cap.intersect({"*": frozenset({"*"})}, key_ns) == key_ns
    assert cap.intersect({"kiosk:s1:k1": frozenset({"subscribe"})}, key_ns) == {}
    assert cap.intersect({"shopper:a": frozenset({"publish", "subscribe"})}, key_ns) == {
        "shopper:a": {"subscribe"}
    }


@given(
    st.text(alphabet="abc:", min_size=1, max_size=8),
    st.text(alphabet="abc:", min_size=1, max_size=8),
)
def test_allows_is_exact_or_namespace_or_star(resource, channel):
    c = {resource: frozenset({"subscribe"})}
    expected = resource == channel or (
        resource.endswith(":*") and channel.startswith(resource[:-1])
    )
    assert cap.allows(c, channel, "subscribe") == expected
    assert not cap.allows(c, channel, "publish")
    assert cap.allows({"*": frozenset({"*"})}, channel, "publish")


def test_parse_rejects_bad_capabilities():
    for bad in ("not json", "[1]", '{"a": [1]}', '{"a": ["fly"]}'):
        with pytest.raises(cap.CapabilityError):
            cap.parse(bad)
