# ruff: noqa: F811  (pytest fixtures imported from the harness)
""""Bought together" end to end: shoppers redeem offers through the API, the real Faust worker's
basket agent pairs each shopper's redemptions of one visit, and GET /analytics/bought-together
serves the pairs. A redelivered redeemed event, and a second offer for a product already in the
pair, do not count the pair twice; a redemption from an earlier visit forms no pair."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from instore import records as r
from instore import serving
from instore import topics as t
from instore.kafka import make_producer, produce
from instore.settings import Settings
from tests.conftest import child_env, make_settings
from tests.integration.api_harness import (  # noqa: F401
    ANALYST,
    MARKETER,
    bearer,
    client,
    poll,
    rds,
    redeem_at_till,
    stop_proc,
    unique,
)

pytestmark = pytest.mark.integration

LAT, LON = 48.8566, 2.3522
BASKET_WINDOW_S = 3600


@pytest.fixture(scope="module")
def api_settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return make_settings(kafka_bootstrap, redis_url, basket_window_s=BASKET_WINDOW_S)


@pytest.fixture(scope="module")
def analytics_worker(api_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Path]:
    """`instore worker` running only the analytics agents, in its own consumer group."""
    workdir = tmp_path_factory.mktemp("basket-worker")
    log_path = workdir / "worker.log"
    env = child_env(api_settings, INSTORE_APP_ID=unique("basket-test-worker"), INSTORE_DATA_DIR=str(workdir),
                    WORKER_AGENTS="analytics", BASKET_WINDOW_S=str(BASKET_WINDOW_S))
    with log_path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "instore", "worker", "--loglevel", "warn"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                start_new_session=True)
    yield log_path
    stop_proc(proc)


def seed_offer(rds, offer_id: str, uid: str, store: str, sku: int) -> None:
    """The offer as the worker's serving writer stores it (the API and the agent look it up)."""
    now = r.now_ms()
    offer = r.Offer(offer_id=offer_id, uid=uid, store_id=store, pid=f"promo-{sku}", sku=sku,
                    title=f"{sku} -10%", discount_pct=10, distance_ft=5, ts=now,
                    expires_at=now + 900_000)
    rds.set(serving.offer(offer_id), offer.to_json(), ex=3600)


def test_two_products_redeemed_in_one_visit_are_a_pair_counted_once_per_shopper(
        client, rds, api_settings, analytics_worker):
    store = unique("basket-store")
    bread, jam, butter, milk = 101, 202, 303, 404
    for sku, name in ((bread, "bread"), (jam, "jam")):
        res = client.post("/products", headers=MARKETER, json={
            "sku": sku, "store_id": store, "segment": "breakfast", "name": name,
            "latitude": LAT, "longitude": LON})
        assert res.status_code == 201, res.text
    ann, bob = unique("ann"), unique("bob")
    token = {uid: client.post(f"/shoppers/{uid}/consent", json={"opted_in": True})
             .json()["shopper_token"] for uid in (ann, bob)}
    offers = {name: unique(name) for name in ("ann-bread", "ann-bread-2", "ann-jam",
                                              "ann-butter", "ann-milk", "bob-jam", "bob-bread")}
    for name, offer_id in offers.items():
        uid = ann if name.startswith("ann") else bob
        sku = {"bread": bread, "jam": jam, "butter": butter, "milk": milk}[name.split("-")[1]]
        seed_offer(rds, offer_id, uid, store, sku)

    redeemed_at = {}
    for name in ("ann-bread", "ann-jam", "bob-jam", "bob-bread"):
        uid = ann if name.startswith("ann") else bob
        res = redeem_at_till(client, uid, token[uid], offers[name], store)
        assert res.status_code == 201, res.text
        redeemed_at[name] = res.json()["redeemed_at"]

    def pairs(**params) -> dict:
        res = client.get("/analytics/bought-together", headers=ANALYST,
                         params={"store_id": store, **params})
        assert res.status_code == 200, res.text
        return res.json()

    def counts(body: dict) -> dict[tuple[int, ...], int]:
        return {tuple(p["sku"] for p in pair["products"]): pair["count"] for pair in body["pairs"]}

    # two shoppers took bread and jam in one visit: one pair, two shoppers
    body = poll(lambda: (b := pairs()) and b["pairs"] and b["pairs"][0]["count"] == 2 and b, 90)
    assert counts(body) == {(bread, jam): 2}
    assert [p["name"] for p in body["pairs"][0]["products"]] == ["bread", "jam"]
    assert body["window_minutes"] == 60 and body["basket_window_s"] == BASKET_WINDOW_S

    # At-least-once input: the jam redemption is delivered again. Behind it, on the same
    # partition (so the agent has handled it once these show): ann redeems a second bread
    # offer, milk in a visit three hours earlier, and butter now.
    producer = make_producer(api_settings)
    where: list[int] = []
    again = r.OfferEvent(offer_id=offers["ann-jam"], uid=ann, event="redeemed",
                         ts=redeemed_at["ann-jam"])
    produce(producer, t.OFFER_EVENTS, again, timestamp_ms=again.ts,
            on_delivery=lambda err, msg: where.append(msg.partition()) if err is None else None)
    assert producer.flush(30) == 0 and where
    now = r.now_ms()
    for name, ts in (("ann-bread-2", now), ("ann-milk", now - 3 * 3_600_000),
                     ("ann-butter", now)):
        event = r.OfferEvent(offer_id=offers[name], uid=ann, event="redeemed", ts=ts)
        producer.produce(t.OFFER_EVENTS.name, key=offers[name].encode(), value=event.to_json(),
                         partition=where[0], timestamp=ts)
    assert producer.flush(30) == 0

    body = poll(lambda: (b := pairs()) and len(b["pairs"]) == 3 and b, 60)
    assert counts(body) == {(bread, jam): 2, (bread, butter): 1, (jam, butter): 1}
    assert body["pairs_seen"] == 3
    assert not any(milk in skus for skus in counts(body))

    # pairs with one product, that product first; the limit; another store sees none
    with_butter = pairs(sku=butter, limit=1)
    assert with_butter["pairs_seen"] == 2 and len(with_butter["pairs"]) == 1
    assert with_butter["pairs"][0]["products"][0]["sku"] == butter
    assert pairs(store_id=unique("elsewhere"))["pairs"] == []

    # erasing ann removes her basket state; the anonymous pair counts stay
    assert rds.zcard(serving.basket_counted(ann)) == 3
    erased = client.delete(f"/shoppers/{ann}", headers=bearer(token[ann]))
    assert erased.status_code == 200
    deleted = set(erased.json()["redis_keys_deleted"])
    assert {serving.basket_recent(ann), serving.basket_counted(ann)} <= deleted
    assert not rds.exists(serving.basket_recent(ann), serving.basket_counted(ann))
    assert counts(pairs()) == {(bread, jam): 2, (bread, butter): 1, (jam, butter): 1}

    res = client.get("/analytics/bought-together", headers=MARKETER, params={"window_minutes": 0})
    assert res.status_code == 422
