# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""Shopper, offer-event, kiosk and push routes against the real broker and Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from instore import records as r
from instore import serving
from instore import topics as t
from instore.kafka import make_consumer
from instore.settings import DEV_ABLY_KEY
from tests.integration.api_harness import (  # noqa: F401
    KIOSK,
    MARKETER,
    OPS,
    api_settings,
    bearer,
    client,
    poll,
    rds,
    redeem_at_till,
    unique,
)

pytestmark = pytest.mark.integration


def read_topic(settings, topic, key: str) -> list[bytes | None]:
    """Every value with ``key`` in ``topic`` (assign from the beginning, no group)."""
    consumer = make_consumer(settings)
    try:
        md = consumer.list_topics(topic.name, timeout=10)
        tps = [
            TopicPartition(topic.name, p, OFFSET_BEGINNING)
            for p in md.topics[topic.name].partitions
        ]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        consumer.assign(tps)
        out: list[bytes | None] = []
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 20  # a loaded machine can be slow to fetch
        while left and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.key() == key.encode():
                out.append(msg.value())
            if msg.offset() + 1 >= ends[msg.partition()]:
                left.discard(msg.partition())
        return out
    finally:
        consumer.close()


def register(client, uid: str) -> str:
    res = client.post(
        f"/shoppers/{uid}/consent", json={"opted_in": True, "channels": ["phone", "kiosk"]}
    )
    assert res.status_code == 200, res.text
    return res.json()["shopper_token"]


def test_opt_in_registers_and_returns_a_token_for_that_uid_only(client, api_settings):
    uid = unique("shopper")
    res = client.post(f"/shoppers/{uid}/consent", json={"opted_in": True, "channels": ["phone"]})
    assert res.status_code == 200
    body = res.json()
    assert body["uid"] == uid and body["opted_in"] is True and body["channels"] == ["phone"]
    token = body["shopper_token"]
    assert token.startswith(f"{uid}.")
    values = poll(lambda: read_topic(api_settings, t.SHOPPER_CONSENTS, uid))
    assert r.decode(r.ShopperConsent, values[-1]).opted_in is True
    # the token works for its uid and no other
    other = unique("shopper")
    assert client.post(f"/shoppers/{other}/ably-token", headers=bearer(token)).status_code == 403
    assert (
        client.post(f"/shoppers/{uid}/ably-token", headers=bearer(token + "x")).status_code == 401
    )


def test_changing_an_existing_consent_needs_the_bearer(client, api_settings):
    uid = unique("shopper")
    token = register(client, uid)
    assert client.post(f"/shoppers/{uid}/consent", json={"opted_in": False}).status_code == 401
    intruder = register(client, unique("shopper"))
    assert (
        client.post(
            f"/shoppers/{uid}/consent", json={"opted_in": False}, headers=bearer(intruder)
        ).status_code
        == 403
    )
    res = client.post(f"/shoppers/{uid}/consent", json={"opted_in": False}, headers=bearer(token))
    assert res.status_code == 200 and res.json()["opted_in"] is False
    fresh = res.json()["shopper_token"]  # opting out revoked every earlier token
    assert client.get(f"/shoppers/{uid}/consent", headers=bearer(token)).status_code == 401
    assert client.get(f"/shoppers/{uid}/consent", headers=bearer(fresh)).json()["opted_in"] is False
    values = poll(
        lambda: (v := read_topic(api_settings, t.SHOPPER_CONSENTS, uid)) and len(v) >= 2 and v
    )
    assert r.decode(r.ShopperConsent, values[-1]).opted_in is False


def test_tokens_are_short_lived_and_renewed(client, api_settings):
    """Privacy finding 2: a shopper token lives SHOPPER_TOKEN_TTL_S (12 h), not 30 days, and
    reading one's consent answers with a fresh one."""
    uid = unique("shopper")
    token = register(client, uid)
    expiry = int(token.rsplit(".", 2)[1])
    assert expiry - time.time() <= api_settings.shopper_token_ttl_s <= 24 * 3600
    renewed = client.get(f"/shoppers/{uid}/consent", headers=bearer(token)).json()["shopper_token"]
    assert renewed != token
    assert client.get(f"/shoppers/{uid}/offers", headers=bearer(renewed)).status_code == 200


def test_erasure_revokes_tokens_and_the_uid_cannot_be_taken_over(client):
    """Privacy finding 2: after an erasure the shopper's tokens stop working and nobody can
    register the erased uid again (its records may still be in the streams)."""
    uid = unique("shopper")
    token = register(client, uid)
    assert client.delete(f"/shoppers/{uid}", headers=bearer(token)).status_code == 200
    assert client.get(f"/shoppers/{uid}/offers", headers=bearer(token)).status_code == 401
    assert client.post(f"/shoppers/{uid}/ably-token", headers=bearer(token)).status_code == 401
    again = client.post(f"/shoppers/{uid}/consent", json={"opted_in": True})
    assert again.status_code == 409, again.text


def test_registration_waits_for_the_consent_view(client):
    """Privacy finding 2: while the consent view has not caught up, the API cannot tell whether
    a uid is taken, so registration answers 503 instead of handing out a token."""
    tables = client.app.state.services.tables
    tables.caught_up.clear()
    try:
        res = client.post(f"/shoppers/{unique('shopper')}/consent", json={"opted_in": True})
        assert res.status_code == 503 and res.headers["Retry-After"]
    finally:
        tables.caught_up.set()
    assert client.post(f"/shoppers/{unique('shopper')}/consent",
                       json={"opted_in": True}).status_code == 200


def _check_mac(req: dict) -> None:
    secret = DEV_ABLY_KEY.split(":", 1)[1]
    text = "\n".join(
        [
            req["keyName"],
            str(req["ttl"]),
            req["capability"],
            req["clientId"],
            str(req["timestamp"]),
            req["nonce"],
            "",
        ]
    )
    mac = base64.b64encode(
        hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    ).decode()
    assert req["mac"] == mac


def test_shopper_ably_token_request_is_scoped_to_their_channel(client):
    uid = unique("shopper")
    token = register(client, uid)
    assert client.post(f"/shoppers/{uid}/ably-token").status_code == 401
    res = client.post(f"/shoppers/{uid}/ably-token", headers=bearer(token))
    assert res.status_code == 200
    req = res.json()
    assert req["keyName"] == DEV_ABLY_KEY.split(":")[0]
    assert req["clientId"] == uid and req["ttl"] == 3600 * 1000
    assert json.loads(req["capability"]) == {f"shopper:{uid}": ["history", "subscribe"]}
    _check_mac(req)


def test_shopper_offers_are_read_from_redis_for_the_shopper_or_ops(client, rds):
    uid = unique("shopper")
    token = register(client, uid)
    offers = [{"offer_id": f"o{i}", "uid": uid, "pid": "p1", "title": "t"} for i in range(3)]
    for offer in offers:
        rds.lpush(serving.offers_of(uid), orjson.dumps(offer))
    mine = client.get(f"/shoppers/{uid}/offers", headers=bearer(token))
    assert mine.status_code == 200
    assert [o["offer_id"] for o in mine.json()] == ["o2", "o1", "o0"]
    assert client.get(f"/shoppers/{uid}/offers", headers=OPS).json() == mine.json()
    assert client.get(f"/shoppers/{uid}/offers", headers=MARKETER).status_code == 403
    assert client.get(f"/shoppers/{uid}/offers").status_code == 401


def _store_offer(rds, uid: str, pid: str, store_id: str) -> str:
    offer_id = unique("offer")
    offer = r.Offer(
        offer_id=offer_id,
        uid=uid,
        store_id=store_id,
        pid=pid,
        sku=7,
        title="10% off",
        discount_pct=10,
        distance_ft=12.5,
        ts=r.now_ms(),
        expires_at=r.now_ms() + 60_000,
    )
    rds.set(serving.offer(offer_id), offer.to_json())
    rds.lpush(serving.offers_of(uid), offer.to_json())
    return offer_id


def test_offer_events_produce_and_count_once(client, rds, api_settings):
    uid, pid, store = unique("shopper"), unique("promo"), unique("store")
    token = register(client, uid)
    offer_id = _store_offer(rds, uid, pid, store)
    for _ in range(2):
        res = client.post(
            f"/offers/{offer_id}/events", json={"event": "opened"}, headers=bearer(token)
        )
        assert res.status_code == 200
    assert res.json()["counted"] is False
    # a shopper cannot declare an offer redeemed: the till redeems the code the phone shows
    res = client.post(
        f"/offers/{offer_id}/events", json={"event": "redeemed"}, headers=bearer(token)
    )
    assert res.status_code == 403 and "till" in res.json()["detail"]
    assert rds.hgetall(serving.promo_stats(pid)) == {"opened": "1"}
    res = redeem_at_till(client, uid, token, offer_id, store)
    assert res.status_code == 201, res.text
    assert rds.hgetall(serving.promo_stats(pid)) == {"opened": "1", "redeemed": "1"}
    assert rds.hgetall(serving.store_stats(store)) == {"opened": "1", "redeemed": "1"}
    events = poll(
        lambda: (v := read_topic(api_settings, t.OFFER_EVENTS, offer_id)) and len(v) >= 3 and v
    )
    assert [r.decode(r.OfferEvent, v).event for v in events] == ["opened", "opened", "redeemed"]
    assert all(r.decode(r.OfferEvent, v).uid == uid for v in events)


def test_offer_events_only_for_the_offers_owner(client, rds):
    owner, other = unique("shopper"), unique("shopper")
    register(client, owner)
    other_token = register(client, other)
    offer_id = _store_offer(rds, owner, unique("promo"), unique("store"))
    res = client.post(
        f"/offers/{offer_id}/events", json={"event": "opened"}, headers=bearer(other_token)
    )
    assert res.status_code == 403
    res = client.post("/offers/nope/events", json={"event": "opened"}, headers=bearer(other_token))
    assert res.status_code == 404
    res = client.post(
        f"/offers/{offer_id}/events", json={"event": "delivered"}, headers=bearer(other_token)
    )
    assert res.status_code == 422


def test_kiosk_interactions_and_token(client, api_settings):
    store, kiosk = unique("store"), "k1"
    res = client.post(
        f"/kiosks/{store}/{kiosk}/interactions",
        json={"action": "tap", "uid": "u-1", "sku": 7},
        headers=KIOSK,
    )
    assert res.status_code == 201
    values = poll(lambda: read_topic(api_settings, t.KIOSK_INTERACTIONS, f"{store}:{kiosk}"))
    rec = r.decode(r.KioskInteraction, values[-1])
    assert (rec.action, rec.uid, rec.store_id) == ("tap", "u-1", store)
    assert (
        client.post(
            f"/kiosks/{store}/{kiosk}/interactions", json={"action": "dance"}, headers=KIOSK
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"/kiosks/{store}/{kiosk}/interactions", json={"action": "tap"}, headers=MARKETER
        ).status_code
        == 403
    )
    tok = client.post(f"/kiosks/{store}/{kiosk}/ably-token", headers=KIOSK)
    assert tok.status_code == 200
    assert json.loads(tok.json()["capability"]) == {
        f"kiosk:{store}:{kiosk}": ["history", "subscribe"]
    }
    _check_mac(tok.json())


def test_a_kiosk_cannot_bind_a_uid_by_itself(client):
    """Privacy finding 6: typing someone's uid at a kiosk no longer checks them in."""
    res = client.post(f"/kiosks/{unique('store')}/k1/interactions",
                      json={"action": "checkin", "uid": "someone-else"}, headers=KIOSK)
    assert res.status_code == 403
    assert "phone" in res.json()["detail"]


def test_check_in_is_confirmed_from_the_phone_with_a_one_time_code(client, api_settings):
    store, kiosk = unique("store"), "k2"
    uid = unique("shopper")
    token = register(client, uid)
    code = client.post(f"/kiosks/{store}/{kiosk}/checkin-codes", headers=KIOSK)
    assert code.status_code == 201, code.text
    c = code.json()["code"]
    assert len(c) == 6 and c.isdigit() and code.json()["expires_in_s"] > 0
    state = client.get(f"/kiosks/{store}/{kiosk}/checkin-codes/{c}", headers=KIOSK).json()
    assert state["state"] == "waiting" and state["uid"] is None
    # only the shopper's own token confirms it, and only for their uid
    assert client.post(f"/shoppers/{uid}/checkin", json={"code": c}).status_code == 401
    other = unique("shopper")
    assert client.post(f"/shoppers/{other}/checkin", json={"code": c},
                       headers=bearer(token)).status_code == 403
    res = client.post(f"/shoppers/{uid}/checkin", json={"code": c}, headers=bearer(token))
    assert res.status_code == 201, res.text
    assert (res.json()["store_id"], res.json()["kiosk_id"]) == (store, kiosk)
    state = client.get(f"/kiosks/{store}/{kiosk}/checkin-codes/{c}", headers=KIOSK).json()
    assert (state["state"], state["uid"]) == ("confirmed", uid)
    values = poll(lambda: read_topic(api_settings, t.KIOSK_INTERACTIONS, f"{store}:{kiosk}"))
    rec = r.decode(r.KioskInteraction, values[-1])
    assert (rec.action, rec.uid, rec.kiosk_id) == ("checkin", uid, kiosk)
    # used once; another kiosk does not see it; an unknown code is a 404
    assert client.post(f"/shoppers/{uid}/checkin", json={"code": c},
                       headers=bearer(token)).status_code == 409
    assert client.get(f"/kiosks/{store}/other/checkin-codes/{c}",
                      headers=KIOSK).status_code == 404
    unknown = "000000" if c != "000000" else "000001"
    assert client.post(f"/shoppers/{uid}/checkin", json={"code": unknown},
                       headers=bearer(token)).status_code in (404, 409)
    assert client.post(f"/shoppers/{uid}/checkin", json={"code": "12ab"},
                       headers=bearer(token)).status_code == 422


def test_check_in_needs_consent_to_kiosk_offers(client):
    uid = unique("shopper")
    res = client.post(f"/shoppers/{uid}/consent", json={"opted_in": True, "channels": ["phone"]})
    token = res.json()["shopper_token"]
    c = client.post(f"/kiosks/{unique('store')}/k1/checkin-codes", headers=KIOSK).json()["code"]
    res = client.post(f"/shoppers/{uid}/checkin", json={"code": c}, headers=bearer(token))
    assert res.status_code == 403 and "consent" in res.json()["detail"]


def test_push_config_and_cors(client, api_settings):
    res = client.get("/push/config")
    assert res.json() == {
        "mode": "hub",
        "rest_host": api_settings.host,
        "port": api_settings.hub_port,
        "tls": False,
    }
    origin = f"http://{api_settings.host}:{api_settings.hub_port}"
    pre = client.options(
        "/shoppers/u/ably-token",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.headers.get("access-control-allow-origin") == origin
    evil = client.options(
        "/shoppers/u/ably-token",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in evil.headers


def test_no_uid_or_secret_in_logs(client, rds, caplog):
    caplog.set_level(logging.DEBUG)
    uid = unique("private")
    token = register(client, uid)
    offer_id = _store_offer(rds, uid, unique("promo"), unique("store"))
    client.post(f"/shoppers/{uid}/ably-token", headers=bearer(token))
    client.get(f"/shoppers/{uid}/offers", headers=bearer(token))
    client.post(f"/offers/{offer_id}/events", json={"event": "opened"}, headers=bearer(token))
    out = client.post(f"/shoppers/{uid}/consent", json={"opted_in": False}, headers=bearer(token))
    fresh = out.json()["shopper_token"]  # opting out revoked the first token
    assert client.delete(f"/shoppers/{uid}", headers=bearer(fresh)).status_code == 200
    client.get("/promotions", headers={"X-API-Key": "wrong-key"})
    # the server's loggers (the test's own HTTP client logs its request lines)
    text = "\n".join(
        rec.getMessage()
        for rec in caplog.records
        if rec.name.split(".")[0] in ("api", "instore", "uvicorn")
    )
    assert "erased" in text  # the lifecycle lines are there...
    assert uid not in text and token not in text and fresh not in text  # ...not who
    assert "wrong-key" not in text
    assert DEV_ABLY_KEY.split(":")[1] not in text
