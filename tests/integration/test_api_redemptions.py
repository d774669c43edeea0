# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""Redemption at the till (role cashier), the code the phone shows for it, and "show me
where", against the real broker and Redis."""

from __future__ import annotations

import pytest

from api import redemption
from instore import records as r
from instore import serving
from instore import topics as t
from tests.integration.api_harness import (  # noqa: F401
    CASHIER,
    KIOSK,
    MARKETER,
    api_settings,
    bearer,
    client,
    poll,
    rds,
    unique,
)
from tests.integration.test_api_shoppers import read_topic, register

pytestmark = pytest.mark.integration

LAT, LON = 40.741895, -73.989308


def store_offer(rds, uid: str, store: str, *, sku: int = 7, expires_in_ms: int = 600_000,
                title: str = "Dark chocolate -25%") -> r.Offer:
    """An offer as the worker's serving writer stores it."""
    now = r.now_ms()
    offer = r.Offer(offer_id=unique("offer"), uid=uid, store_id=store, pid=unique("promo"),
                    sku=sku, title=title, discount_pct=25, distance_ft=12.0, ts=now,
                    expires_at=now + expires_in_ms)
    rds.set(serving.offer(offer.offer_id), offer.to_json(), ex=3600)
    rds.lpush(serving.offers_of(uid), offer.to_json())
    return offer


def add_product(client, store: str, sku: int, name: str, lat: float, lon: float,
                country: str) -> None:
    res = client.post("/products", headers=MARKETER, json={
        "sku": sku, "store_id": store, "segment": "snacks", "name": name,
        "latitude": lat, "longitude": lon, "country": country})
    assert res.status_code == 201, res.text
    poll(lambda: client.get(f"/products/{store}/{sku}", headers=MARKETER).status_code == 200)


def show_code(client, uid: str, token: str, offer_id: str) -> dict:
    res = client.get(f"/shoppers/{uid}/offers/{offer_id}/code", headers=bearer(token))
    assert res.status_code == 200, res.text
    return res.json()


def till(client, code: str, store: str):
    return client.post("/redemptions", json={"code": code, "store_id": store}, headers=CASHIER)


def test_the_till_redeems_a_code_once(client, rds, api_settings):
    uid, store = unique("shopper"), unique("store")
    token = register(client, uid)
    add_product(client, store, 7, "Dark chocolate 70%", LAT, LON, "US")
    offer = store_offer(rds, uid, store)
    shown = show_code(client, uid, token, offer.offer_id)
    assert shown["redeemed_at"] is None and shown["expires_at"] == offer.expires_at
    assert shown["qr_svg"].startswith("<svg")
    # typeable: two groups of five; carries no uid
    assert len(shown["code"]) == 11 and shown["code"][5] == "-"
    assert uid not in shown["code"] and uid not in shown["qr_svg"]

    # the cashier types it in lower case without the dash: still the code
    res = till(client, shown["code"].replace("-", " ").lower(), store)
    assert res.status_code == 201, res.text
    body = res.json()
    assert (body["offer_id"], body["title"], body["discount_pct"], body["product"]) == (
        offer.offer_id, "Dark chocolate -25%", 25, "Dark chocolate 70%")
    assert uid not in res.text
    # the second scan is refused, and nothing is counted twice
    again = till(client, shown["code"], store)
    assert again.status_code == 409 and "already redeemed" in again.json()["detail"]
    assert rds.hget(serving.promo_stats(offer.pid), "redeemed") == "1"
    assert rds.hget(serving.store_stats(store), "redeemed") == "1"
    # offer_events has the redemption, with the shopper, as every consumer expects it
    events = poll(lambda: read_topic(api_settings, t.OFFER_EVENTS, offer.offer_id))
    decoded = [r.decode(r.OfferEvent, v) for v in events]
    assert [(e.event, e.uid) for e in decoded] == [("redeemed", uid)]
    assert decoded[0].ts == body["redeemed_at"]
    # the phone learns it was redeemed
    assert show_code(client, uid, token, offer.offer_id)["redeemed_at"] == body["redeemed_at"]


def test_a_shopper_cannot_redeem_by_themselves(client, rds):
    uid, store = unique("shopper"), unique("store")
    token = register(client, uid)
    offer = store_offer(rds, uid, store)
    res = client.post(f"/offers/{offer.offer_id}/events", json={"event": "redeemed"},
                      headers=bearer(token))
    assert res.status_code == 403
    code = show_code(client, uid, token, offer.offer_id)["code"]
    assert client.post("/redemptions", json={"code": code, "store_id": store},
                       headers=bearer(token)).status_code == 401
    assert client.post("/redemptions", json={"code": code, "store_id": store},
                       headers=KIOSK).status_code == 403
    assert rds.hget(serving.promo_stats(offer.pid), "redeemed") is None
    assert till(client, code, store).status_code == 201  # the till still can


def test_forged_guessed_and_mistyped_codes_are_refused(client, rds, api_settings):
    uid, store = unique("shopper"), unique("store")
    token = register(client, uid)
    offer = store_offer(rds, uid, store)
    # the offer id is known (the marketers' feed shows it), the secret is not
    forged = redemption.code_of(b"not-the-secret", offer.offer_id)
    res = till(client, forged, store)
    assert res.status_code == 404 and "no offer has this code" in res.json()["detail"]
    # the right code, before the phone ever showed it: no such code yet
    real = redemption.code_of(api_settings.shopper_secret, offer.offer_id)
    assert till(client, real, store).status_code == 404
    # a tampered serving entry that points a code at another offer does not verify
    other = store_offer(rds, uid, store)
    rds.hset(serving.redeem_code(forged), mapping={"offer_id": other.offer_id,
                                                   "store_id": store,
                                                   "expires_at": other.expires_at})
    rds.expire(serving.redeem_code(forged), 60)
    assert till(client, forged, store).status_code == 404
    # not a code at all: 422, one sentence
    for text in ("12345", "ABCDE-FGHIJ-KLMNO", "UUUUU-UUUUU", "ÄÄÄÄÄÄÄÄÄÄ"):
        res = till(client, text, store)
        assert res.status_code == 422, (text, res.text)
    shown = show_code(client, uid, token, offer.offer_id)["code"]
    assert till(client, shown, store).status_code == 201
    assert rds.hget(serving.promo_stats(other.pid), "redeemed") is None


def test_an_expired_offer_is_refused_at_the_till_and_has_no_code(client, rds):
    uid, store = unique("shopper"), unique("store")
    token = register(client, uid)
    offer = store_offer(rds, uid, store, expires_in_ms=1500)
    code = show_code(client, uid, token, offer.offer_id)["code"]
    poll(lambda: r.now_ms() > offer.expires_at, timeout_s=10)
    res = till(client, code, store)
    assert res.status_code == 410 and "expired" in res.json()["detail"]
    assert rds.hget(serving.promo_stats(offer.pid), "redeemed") is None
    late = client.get(f"/shoppers/{uid}/offers/{offer.offer_id}/code", headers=bearer(token))
    assert late.status_code == 410
    # the code's record outlives the offer (so the till can say why), not forever
    ttl = rds.ttl(serving.redeem_code(redemption.normalize(code)))
    assert 0 < ttl <= serving.REDEEM_CODE_KEEP_S


def test_someone_elses_offer(client, rds):
    """Another shopper cannot get the code of an offer that is not theirs; a code is for the
    offer's store only."""
    owner, other, store = unique("shopper"), unique("shopper"), unique("store")
    owner_token, other_token = register(client, owner), register(client, other)
    offer = store_offer(rds, owner, store)
    assert client.get(f"/shoppers/{other}/offers/{offer.offer_id}/code",
                      headers=bearer(other_token)).status_code == 404
    assert client.get(f"/shoppers/{owner}/offers/{offer.offer_id}/code",
                      headers=bearer(other_token)).status_code == 403
    code = show_code(client, owner, owner_token, offer.offer_id)["code"]
    res = till(client, code, unique("store"))
    assert res.status_code == 409 and "another store" in res.json()["detail"]
    assert till(client, code, store).status_code == 201


def test_two_tills_at_once_redeem_once(client, rds):
    from concurrent.futures import ThreadPoolExecutor

    uid, store = unique("shopper"), unique("store")
    token = register(client, uid)
    offer = store_offer(rds, uid, store)
    code = show_code(client, uid, token, offer.offer_id)["code"]
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(res.status_code for res in pool.map(
            lambda _: till(client, code, store), range(4)))
    assert codes == [201, 409, 409, 409]
    assert rds.hget(serving.promo_stats(offer.pid), "redeemed") == "1"


def test_erasure_removes_the_codes(client, rds):
    uid, store = unique("shopper"), unique("store")
    token = register(client, uid)
    offer = store_offer(rds, uid, store)
    code = show_code(client, uid, token, offer.offer_id)["code"]
    assert client.delete(f"/shoppers/{uid}", headers=bearer(token)).status_code == 200
    assert rds.exists(serving.redeem_code(redemption.normalize(code))) == 0
    assert till(client, code, store).status_code == 404


def test_show_me_where_in_feet_in_the_us_and_metres_elsewhere(client, rds):
    uid = unique("shopper")
    token = register(client, uid)
    us, fr = unique("store-us"), unique("store-fr")
    # the product 10 m north of the shopper; another shelf in the store, unnamed on the map
    north = LAT + 10 / 111_195.0
    for store, country in ((us, "US"), (fr, "FR")):
        add_product(client, store, 7, "Dark chocolate 70%", north, LON, country)
        add_product(client, store, 8, "Secret other product", LAT - 0.0001, LON + 0.0001,
                    country)
        rds.hset(serving.store_positions(store), uid,
                 f'{{"latitude": {LAT}, "longitude": {LON}, "ts": {r.now_ms()}}}')
    maps = {}
    for store in (us, fr):
        offer = store_offer(rds, uid, store)
        res = client.get(f"/shoppers/{uid}/offers/{offer.offer_id}/where", headers=bearer(token))
        assert res.status_code == 200, res.text
        maps[store] = res.json()
        assert "Secret other product" not in res.text and uid not in res.text
    assert maps[us]["units"] == "ft" and maps[fr]["units"] == "m"
    assert maps[fr]["distance"] == pytest.approx(10.0, abs=0.1)
    assert maps[us]["distance"] == pytest.approx(10.0 / 0.3048, abs=0.5)
    m = maps[fr]
    assert m["product"]["name"] == "Dark chocolate 70%" and len(m["shelves"]) == 2
    # the product is north of the shopper on the map, and the way goes from one to the other
    assert m["product"]["y"] - m["you"]["y"] == pytest.approx(10.0, abs=0.1)
    assert [(p["x"], p["y"]) for p in m["route"]] == [
        (m["you"]["x"], m["you"]["y"]), (m["product"]["x"], m["product"]["y"])]
    assert 0 <= m["you"]["x"] <= m["width"] and 0 <= m["product"]["y"] <= m["height"]


def test_the_kiosk_shows_the_offers_of_the_shopper_checked_in_there(client, rds):
    uid, store, kiosk = unique("shopper"), unique("store"), "k1"
    token = register(client, uid)
    add_product(client, store, 7, "Dark chocolate 70%", LAT, LON, "DE")
    here = store_offer(rds, uid, store)
    store_offer(rds, uid, unique("elsewhere"))  # another store's offer: not on this kiosk
    base = f"/kiosks/{store}/{kiosk}/shoppers/{uid}/offers"
    assert client.get(base, headers=KIOSK).status_code == 404  # not checked in here
    c = client.post(f"/kiosks/{store}/{kiosk}/checkin-codes", headers=KIOSK).json()["code"]
    assert client.post(f"/shoppers/{uid}/checkin", json={"code": c},
                       headers=bearer(token)).status_code == 201
    # the push sink records the check-in from kiosk_interactions (the e2e test runs it)
    rds.set(serving.checkin(uid), f"{store}:{kiosk}", ex=60)
    res = client.get(base, headers=KIOSK)
    assert res.status_code == 200, res.text
    assert [o["offer_id"] for o in res.json()] == [here.offer_id]
    assert client.get(f"/kiosks/{store}/k2/shoppers/{uid}/offers", headers=KIOSK).status_code \
        == 404
    where = client.get(f"{base}/{here.offer_id}/where", headers=KIOSK)
    assert where.status_code == 200 and where.json()["units"] == "m"
    # checked out (the sink clears the key): nothing more
    rds.delete(serving.checkin(uid))
    assert client.get(base, headers=KIOSK).status_code == 404
