"""Revocable tokens in the hub's authority (Ably's rules: Basic auth only, per-target results,
issuedBefore, allowReauthMargin) and the realtime protocol's rewind/resume helpers."""

from __future__ import annotations

import base64

import pytest

from mobile_push.local_hub.realtime import after_serial, rewind_backlog, wire_message
from mobile_push.local_hub.tokens import (
    REVOKE_REAUTH_MARGIN_MS,
    ApiKey,
    AuthError,
    TokenAuthority,
    sign_token_request,
)

KEY = ApiKey.parse("app.key:s3cret")
NOW = 1_800_000_000_000


def _token(authority: TokenAuthority, client_id: str, channel: str, at: int) -> str:
    tr = sign_token_request(
        KEY, capability={channel: ["subscribe"]}, client_id=client_id, timestamp=at
    )
    return authority.request_token(KEY.name, tr, now_ms=at)["token"]


def _key_grant(authority: TokenAuthority):
    return authority.basic(base64.b64encode(b"app.key:s3cret").decode())


def test_revoking_a_client_id_refuses_its_older_tokens_only():
    auth = TokenAuthority([KEY])
    ana_old = _token(auth, "ana", "shopper:ana", NOW - 5_000)
    bob = _token(auth, "bob", "shopper:bob", NOW - 5_000)
    result = auth.revoke(_key_grant(auth), KEY.name, {"targets": ["clientId:ana"]}, now_ms=NOW)
    assert result == {
        "successCount": 1,
        "failureCount": 0,
        "results": [{"target": "clientId:ana", "issuedBefore": NOW, "appliesAt": NOW}],
    }
    with pytest.raises(AuthError) as exc:
        auth.bearer(ana_old, now_ms=NOW + 1)
    assert (exc.value.status, exc.value.code) == (401, 40141)
    assert auth.bearer(bob, now_ms=NOW + 1).client_id == "bob"
    ana_new = _token(auth, "ana", "shopper:ana", NOW + 10)
    assert auth.bearer(ana_new, now_ms=NOW + 20).client_id == "ana"


def test_token_auth_may_not_revoke_and_bad_targets_fail_alone():
    auth = TokenAuthority([KEY])
    grant = auth.bearer(_token(auth, "ana", "shopper:ana", NOW), now_ms=NOW)
    with pytest.raises(AuthError) as exc:
        auth.revoke(grant, KEY.name, {"targets": ["clientId:ana"]}, now_ms=NOW)
    assert exc.value.code == 40162
    with pytest.raises(AuthError):
        auth.revoke(_key_grant(auth), KEY.name, {"targets": []}, now_ms=NOW)
    res = auth.revoke(
        _key_grant(auth), KEY.name, {"targets": ["clientId:x", "bogus:y"]}, now_ms=NOW
    )
    assert (res["successCount"], res["failureCount"]) == (1, 1)
    assert res["results"][1]["error"]["statusCode"] == 400


def test_reauth_margin_postpones_and_issued_before_limits():
    auth = TokenAuthority([KEY])
    tok = _token(auth, "ana", "shopper:ana", NOW - 60_000)
    res = auth.revoke(
        _key_grant(auth),
        KEY.name,
        {"targets": ["clientId:ana"], "allowReauthMargin": True},
        now_ms=NOW,
    )
    assert res["results"][0]["appliesAt"] == NOW + REVOKE_REAUTH_MARGIN_MS
    assert auth.bearer(tok, now_ms=NOW + 1).client_id == "ana"
    with pytest.raises(AuthError):
        auth.bearer(tok, now_ms=NOW + REVOKE_REAUTH_MARGIN_MS)
    auth2 = TokenAuthority([KEY])
    tok2 = _token(auth2, "ana", "shopper:ana", NOW - 60_000)
    auth2.revoke(
        _key_grant(auth2),
        KEY.name,
        {"targets": ["clientId:ana"], "issuedBefore": NOW - 120_000},
        now_ms=NOW,
    )
    assert auth2.bearer(tok2, now_ms=NOW + 1).client_id == "ana"


def test_channel_target_revokes_tokens_for_that_channel():
    auth = TokenAuthority([KEY])
    kiosk = _token(auth, "kiosk:s1:k1", "kiosk:s1:k1", NOW - 10)
    other = _token(auth, "kiosk:s1:k2", "kiosk:s1:k2", NOW - 10)
    auth.revoke(_key_grant(auth), KEY.name, {"targets": ["channel:kiosk:s1:k1"]}, now_ms=NOW)
    with pytest.raises(AuthError):
        auth.bearer(kiosk, now_ms=NOW + 1)
    auth.bearer(other, now_ms=NOW + 1)


def test_rewind_and_resume_helpers():
    history = [{"id": f"m{i}", "serial": f"s{i}", "timestamp": NOW - (10 - i) * 1000} for i in range(10)]
    assert [m["id"] for m in rewind_backlog(history, "3", NOW)] == ["m7", "m8", "m9"]
    assert [m["id"] for m in rewind_backlog(history, "2s", NOW)] == ["m8", "m9"]
    assert rewind_backlog(history, None, NOW) == []
    assert rewind_backlog(history, "soon", NOW) == []
    assert [m["id"] for m in after_serial(history, "s7") or []] == ["m8", "m9"]
    assert after_serial(history, "gone") is None
    out = wire_message({"id": "b", "data": b"\x00\x01", "encoding": "utf-8"}, binary=False)
    assert out["data"] == "AAE=" and out["encoding"] == "utf-8/base64"


def test_saved_revocations_reload_without_stale_or_foreign_ones():
    auth = TokenAuthority([KEY])
    auth.revoke(_key_grant(auth), KEY.name, {"targets": ["clientId:ana"]}, now_ms=NOW)
    saved = auth.revocations_json() + [
        {"k": "other.key", "t": "clientId:x", "b": NOW, "a": NOW},
        {"k": KEY.name, "t": "clientId:old", "b": NOW - 2 * 24 * 3600 * 1000, "a": 0},
        {"broken": True},
    ]
    fresh = TokenAuthority([KEY])
    assert fresh.load_revocations(saved, now_ms=NOW + 1) == 1
    tok = _token(fresh, "ana", "shopper:ana", NOW - 10)
    with pytest.raises(AuthError):
        fresh.bearer(tok, now_ms=NOW + 1)


def test_revoking_a_shopper_drops_their_channel_history_at_once():
    """Erasure revokes the shopper's tokens (clientId:<uid>); the local hub then forgets what
    their channel carried, so nothing sent to them can be read back. Others keep theirs."""
    from fastapi.testclient import TestClient

    from instore.settings import Settings
    from mobile_push.local_hub.app import create_app

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    key = ApiKey.parse(settings.ably_key)
    basic = {"Authorization": "Basic " + base64.b64encode(settings.ably_key.encode()).decode()}
    with TestClient(create_app(settings)) as client:
        for uid in ("ana", "bob"):
            r = client.post(f"/channels/shopper:{uid}/messages", headers=basic,
                            json={"name": "offer", "data": {"offer_id": f"o-{uid}"}})
            assert r.status_code in (200, 201), r.text
        assert len(client.get("/channels/shopper:ana/messages", headers=basic).json()) == 1
        r = client.post(f"/keys/{key.name}/revokeTokens", headers=basic,
                        json={"targets": ["clientId:ana"]})
        assert r.status_code == 200, r.text
        assert client.get("/channels/shopper:ana/messages", headers=basic).json() == []
        assert len(client.get("/channels/shopper:bob/messages", headers=basic).json()) == 1


def test_a_token_request_signed_before_a_revocation_gives_a_revoked_token():
    """Privacy finding 3: issue time = signing time, so a TokenRequest signed before erasure
    and exchanged after it does not outlive the revocation."""
    auth = TokenAuthority([KEY])
    signed = sign_token_request(
        KEY, capability={"shopper:ana": ["subscribe"]}, client_id="ana", timestamp=NOW - 2_000
    )
    auth.revoke(_key_grant(auth), KEY.name, {"targets": ["clientId:ana"]}, now_ms=NOW - 1_000)
    token = auth.request_token(KEY.name, signed, now_ms=NOW)  # exchanged after the erasure
    with pytest.raises(AuthError) as exc:
        auth.bearer(token["token"], now_ms=NOW + 1)
    assert (exc.value.status, exc.value.code) == (401, 40141)
    assert token["issued"] == NOW - 2_000
