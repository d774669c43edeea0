# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""The read routes no other TestClient test exercised: the funnel per store, per promotion and
in total, the offers feed, the product list and segments, one store's metadata and its removal.
Counters and feed entries are written to the real Redis as the worker's serving writer does."""

from __future__ import annotations

import orjson
import pytest

from instore import records as r
from instore import serving
from tests.integration.api_harness import (  # noqa: F401
    ANALYST,
    MARKETER,
    api_settings,
    client,
    rds,
    unique,
)

pytestmark = pytest.mark.integration

LAT, LON = 45.4642, 9.19


def add_product(client, store: str, sku: int, segment: str) -> None:
    res = client.post("/products", headers=MARKETER, json={
        "sku": sku, "store_id": store, "segment": segment, "name": f"item {sku}",
        "latitude": LAT, "longitude": LON})
    assert res.status_code == 201, res.text


def test_store_funnel_and_totals(client, rds):
    store = unique("funnel-store")
    put = client.put(f"/stores/{store}", headers=MARKETER, json={
        "name": "Milano", "latitude": LAT, "longitude": LON, "country": "it"})
    assert put.status_code == 200
    # the stages as the funnel agent counts them (reached the stage or a later one); the plain
    # event counts beside them are not the funnel
    rds.hset(serving.store_stats(store), mapping={
        "nearby": 40, "sent": 10, serving.reached("delivered"): 8,
        serving.reached("opened"): 4, serving.reached("redeemed"): 2,
        "delivered": 1, "opened": 7})
    one = client.get(f"/funnel/stores/{store}", headers=ANALYST)
    assert one.status_code == 200
    assert one.json() == {"store_id": store, "funnel": {
        "nearby": 40, "sent": 10, "delivered": 8, "opened": 4, "redeemed": 2,
        "open_rate": 0.4, "conversion": 0.2}}
    every = {f["store_id"]: f["funnel"] for f in
             client.get("/funnel/stores", headers=MARKETER).json()}
    assert every[store]["redeemed"] == 2
    assert client.get(f"/funnel/stores/{unique('nowhere')}", headers=ANALYST).status_code == 404

    reason = unique("reason")
    before = client.get("/funnel/totals", headers=ANALYST).json()
    rds.hincrby(serving.totals(), "offers", 6)
    rds.hincrby(serving.totals(), serving.reached("redeemed"), 3)
    rds.hincrby(serving.totals(), f"dead:{reason}", 2)
    after = client.get("/funnel/totals", headers=ANALYST).json()
    assert after["counters"].get("offers", 0) - before["counters"].get("offers", 0) == 6
    assert after["funnel"]["redeemed"] - before["funnel"]["redeemed"] == 3
    assert after["dead_letters_by_reason"][reason] == 2
    assert not any(k.startswith("dead:") for k in after["counters"])


def test_funnel_of_every_promotion(client, rds):
    store = unique("promo-store")
    sku = 600_000 + int(store[-5:], 16) % 100_000
    add_product(client, store, sku, "cheese")
    res = client.post("/promotions", headers=MARKETER, json={
        "sku": sku, "title": "parmigiano -15%", "discount_pct": 15,
        "starts_at": "2999-01-01T00:00:00Z"})
    assert res.status_code == 201, res.text
    pid = res.json()["pid"]
    rds.hset(serving.promo_stats(pid), mapping={"sent": 5, serving.reached("delivered"): 5,
                                                serving.reached("opened"): 5,
                                                serving.reached("redeemed"): 1})
    rows = {p["pid"]: p for p in client.get("/funnel/promotions", headers=ANALYST).json()}
    assert rows[pid]["title"] == "parmigiano -15%" and rows[pid]["status"] == "scheduled"
    assert rows[pid]["funnel"]["conversion"] == 0.2 and rows[pid]["funnel"]["open_rate"] == 1.0


def test_offers_feed_is_newest_first_per_store_and_limited(client, rds):
    store, other = unique("feed-store"), unique("feed-other")
    now = r.now_ms()
    for i, where in enumerate([store, other, store, store]):
        offer = r.Offer(offer_id=unique("feed"), uid=unique("u"), store_id=where, pid="p",
                        sku=i, title=f"offer {i}", discount_pct=10, distance_ft=2, ts=now + i,
                        expires_at=now + 60_000)
        rds.lpush(serving.offers_feed(), offer.to_json())  # as the serving writer does
    feed = client.get("/offers/feed", headers=MARKETER, params={"store_id": store, "limit": 2})
    assert feed.status_code == 200
    assert [o["sku"] for o in feed.json()] == [3, 2]
    assert [o["sku"] for o in client.get("/offers/feed", headers=ANALYST,
                                         params={"store_id": other}).json()] == [1]
    assert client.get("/offers/feed", headers=ANALYST, params={"limit": 0}).status_code == 422


def test_products_segments_and_store_metadata(client, rds):
    store = unique("cat-store")
    segment = unique("seg")
    add_product(client, store, 1, segment)
    add_product(client, store, 2, "other-" + segment)
    listed = client.get("/products", headers=ANALYST, params={"store_id": store}).json()
    assert sorted(p["sku"] for p in listed) == [1, 2]
    by_segment = client.get("/products", headers=ANALYST,
                            params={"store_id": store, "segment": segment}).json()
    assert [p["sku"] for p in by_segment] == [1]
    assert segment in client.get("/products/segments", headers=MARKETER).json()

    meta = {"name": "Navigli", "latitude": LAT, "longitude": LON, "geofence_radius_m": 60,
            "country": "IT"}
    assert client.put(f"/stores/{store}", headers=MARKETER, json=meta).status_code == 200
    got = client.get(f"/stores/{store}", headers=ANALYST).json()
    assert got["name"] == "Navigli" and got["geofence_radius_m"] == 60 and got["products"] == 2
    assert orjson.loads(rds.get(serving.store_meta(store)))["country"] == "IT"
    assert client.delete(f"/stores/{store}", headers=MARKETER).status_code == 204
    # the products keep the store listed, without its metadata
    assert client.get(f"/stores/{store}", headers=ANALYST).json()["name"] is None
    assert client.delete(f"/stores/{store}", headers=MARKETER).status_code == 404
    assert client.get(f"/stores/{unique('nowhere')}", headers=ANALYST).status_code == 404
