# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""Erasure end to end with the real Faust worker: after DELETE /shoppers/{uid} the shopper gets
no offer (within the 5 s the issue allows) while a control shopper beside them keeps getting
offers; the serving store forgets them. The analytics agents run in the same worker."""

from __future__ import annotations

import orjson
import pytest

from instore import records as r
from instore import serving
from instore import topics as t
from tests.integration.api_harness import (  # noqa: F401
    ANALYST,
    MARKETER,
    OPS,
    PositionFeed,
    api_settings,
    bearer,
    client,
    poll,
    rds,
    redeem_at_till,
    unique,
    worker,
)
from tests.integration.test_api_shoppers import read_topic

pytestmark = pytest.mark.integration

LAT, LON = 48.8566, 2.3522
ERASURE_BOUND_MS = 5000


def offers_in_redis(rds, uid: str) -> list[dict]:
    return [orjson.loads(x) for x in rds.lrange(serving.offers_of(uid), 0, -1)]


def test_erasure_stops_offers_and_clears_the_serving_store(client, rds, api_settings, worker):
    store = unique("store")
    sku = 900_000 + int(store[-5:], 16) % 90_000
    assert (
        client.post(
            "/products",
            headers=MARKETER,
            json={
                "sku": sku,
                "store_id": store,
                "segment": "bakery",
                "name": "croissant",
                "latitude": LAT,
                "longitude": LON,
            },
        ).status_code
        == 201
    )
    promo = client.post(
        "/promotions",
        headers=MARKETER,
        json={"sku": sku, "title": "croissant -20%", "discount_pct": 20, "radius_ft": 30},
    )
    assert promo.status_code == 201, promo.text
    pid = promo.json()["pid"]
    target, control = unique("erase-me"), unique("control")
    tokens = {}
    for uid in (target, control):
        res = client.post(f"/shoppers/{uid}/consent", json={"opted_in": True})
        tokens[uid] = res.json()["shopper_token"]
    feed = PositionFeed(api_settings, store, LAT, LON)
    feed.uids = [target, control]
    feed.start()
    try:
        # the worker joins its group, loads the catalog and starts offering to both
        poll(lambda: offers_in_redis(rds, target) and offers_in_redis(rds, control), 120, 0.25)
        # offers are written with their batch, the live set with the once-a-second flush:
        # erase only once the target is in the store's live set too (the report counts it)
        poll(lambda: rds.zscore(serving.store_live(store), target) is not None, 30, 0.25)
        assert client.get(f"/shoppers/{target}/offers", headers=bearer(tokens[target])).json()

        erased_at = r.now_ms()
        res = client.delete(f"/shoppers/{target}", headers=bearer(tokens[target]))
        assert res.status_code == 200
        report = res.json()
        assert report["tombstoned"] == [t.SHOPPER_CONSENTS.name]
        assert serving.offers_of(target) in report["redis_keys_deleted"]
        assert report["offers_deleted"] >= 1 and store in report["store_sets_cleaned"]
        # the answer states the bounds it keeps (privacy finding 3)
        assert "serving store" in report["erased_now"] and "shopper tokens" in report["erased_now"]
        assert report["compacted_within_s"] == 3 * api_settings.compaction_ms // 1000
        assert report["streams_expire_within_s"] >= api_settings.stream_retention_ms // 1000

        # the control shopper keeps getting offers well past the bound: the worker is live
        deadline = erased_at + ERASURE_BOUND_MS + 3000
        poll(lambda: any(o["ts"] > deadline for o in offers_in_redis(rds, control)), 60, 0.25)
    finally:
        feed.stop()

    late = [o for o in offers_in_redis(rds, target) if o["ts"] > erased_at + ERASURE_BOUND_MS]
    assert late == []
    produced = [r.decode(r.Offer, v) for v in read_topic(api_settings, t.OFFERS, target) if v]
    assert produced, "the target got offers before the erasure"
    assert all(o.ts <= erased_at + ERASURE_BOUND_MS for o in produced)
    consent = read_topic(api_settings, t.SHOPPER_CONSENTS, target)
    assert consent[-1] is None  # tombstone
    # an erased shopper's token is revoked: it no longer reads or changes anything
    assert (
        client.get(f"/shoppers/{target}/consent", headers=bearer(tokens[target])).status_code == 401
    )

    # the analytics agents saw the dwell; a redemption shows up in the ranking
    def top(metric: str) -> list[dict]:
        res = client.get(f"/analytics/top-products?by={metric}&store_id={store}", headers=ANALYST)
        return res.json()["top"]

    assert poll(lambda: top("dwell"), 30)[0]["sku"] == sku
    offer_id = offers_in_redis(rds, control)[0]["offer_id"]
    res = redeem_at_till(client, control, tokens[control], offer_id, store)
    assert res.status_code == 201, res.text
    assert poll(lambda: top("redemptions"), 30)[0]["value"] == 1
    funnel = client.get(f"/funnel/promotions/{pid}", headers=MARKETER).json()["funnel"]
    assert funnel["sent"] >= 2 and funnel["redeemed"] == 1


def test_erasure_removes_offers_older_than_the_latest_list(client, rds):
    """The worker keeps a shopper's latest offers in a capped list but every offer by id for a
    day: erasure finds and deletes the older ones too, and nobody else's."""
    uid, other = unique("many-offers"), unique("bystander")
    now = r.now_ms()
    ids = [unique("old-offer") for _ in range(serving.LATEST_OFFERS_KEEP + 5)]
    for owner, offer_id in [(uid, i) for i in ids] + [(other, unique("their-offer"))]:
        offer = r.Offer(offer_id=offer_id, uid=owner, store_id="s", pid="p", sku=1, title="t",
                        discount_pct=10, distance_ft=1, ts=now, expires_at=now + 60_000)
        # as the worker's serving writer stores an offer
        rds.lpush(serving.offers_of(owner), offer.to_json())
        rds.ltrim(serving.offers_of(owner), 0, serving.LATEST_OFFERS_KEEP - 1)
        rds.set(serving.offer(offer_id), offer.to_json(), ex=600)
        rds.set(serving.offer_event_mark(offer_id, "opened"), now, ex=600)
    res = client.delete(f"/shoppers/{uid}", headers=OPS)
    assert res.status_code == 200, res.text
    assert res.json()["offers_deleted"] == len(ids)
    assert not any(rds.exists(serving.offer(i)) for i in ids)
    assert rds.llen(serving.offers_of(other)) == 1
    their = orjson.loads(rds.lindex(serving.offers_of(other), 0))["offer_id"]
    assert rds.exists(serving.offer(their))
