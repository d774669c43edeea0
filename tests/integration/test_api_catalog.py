# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""Catalog, promotions and funnel routes against the real broker and Redis."""

from __future__ import annotations

import pytest

from api.tables import TableView
from instore import records as r
from instore import serving
from instore import topics as t
from instore.kafka import command_producer, produce
from tests.integration.api_harness import (  # noqa: F401
    ANALYST,
    MARKETER,
    api_settings,
    client,
    poll,
    rds,
    unique,
)
from tests.integration.test_api_shoppers import read_topic

pytestmark = pytest.mark.integration

ANCHOR = (51.5072, -0.1276)


def product(store_id: str, sku: int, segment: str = "coffee", dlat: float = 0.0) -> dict:
    return {
        "sku": sku,
        "store_id": store_id,
        "segment": segment,
        "name": f"product {sku}",
        "latitude": ANCHOR[0] + dlat,
        "longitude": ANCHOR[1],
    }


def test_store_and_products_then_floor(client, rds):
    store = unique("store")
    res = client.put(
        f"/stores/{store}",
        headers=MARKETER,
        json={
            "name": "Soho",
            "latitude": ANCHOR[0],
            "longitude": ANCHOR[1],
            "geofence_radius_m": 80,
            "country": "gb",
        },
    )
    assert res.status_code == 200 and res.json()["country"] == "GB"
    res = client.post("/products", headers=MARKETER, json=product(store, 101))
    assert res.status_code == 201 and res.json()["country"] == "GB"
    assert client.get(f"/products/{store}/101", headers=ANALYST).json()["name"] == "product 101"
    stores = {s["store_id"]: s for s in client.get("/stores", headers=ANALYST).json()}
    assert stores[store]["products"] == 1 and stores[store]["name"] == "Soho"
    rds.hset(
        serving.store_positions(store),
        "someone",
        f'{{"latitude": {ANCHOR[0]}, "longitude": {ANCHOR[1]}, "ts": {r.now_ms()}}}',
    )
    floor = client.get(f"/stores/{store}/floor", headers=MARKETER).json()
    assert [p["sku"] for p in floor["products"]] == [101]
    assert len(floor["shoppers"]) == 1 and "uid" not in floor["shoppers"][0]
    assert client.delete(f"/products/{store}/101", headers=MARKETER).status_code == 204
    assert client.get(f"/products/{store}/101", headers=MARKETER).status_code == 404


def test_bulk_csv_reports_rows_in_error(client, api_settings):
    store = unique("store")
    csv_text = (
        "sku,store_id,segment,variant,name,latitude,longitude,country\n"
        f"1,{store},tea,,green tea,51.5,-0.12,GB\n"
        f"x,{store},tea,,bad sku,51.5,-0.12,GB\n"
        f"3,{store},tea,,too far north,95,-0.12,GB\n"
        f"4,{store},tea,large,black tea,51.5001,-0.1201,\n"
        f"5,{store},,,no segment,51.5,-0.12,GB\n"
    )
    res = client.post(
        "/products/bulk", headers=MARKETER, files={"file": ("catalog.csv", csv_text, "text/csv")}
    )
    assert res.status_code == 200, res.text
    report = res.json()
    assert (report["rows"], report["accepted"], report["rejected"]) == (5, 2, 3)
    assert [e["row"] for e in report["errors"]] == [3, 4, 6]
    assert "sku" in report["errors"][0]["error"] and "latitude" in report["errors"][1]["error"]
    assert "segment" in report["errors"][2]["error"]
    assert poll(lambda: read_topic(api_settings, t.STORES_PRODUCTS, f"{store}:4"))
    bad = client.post(
        "/products/bulk", headers=MARKETER, files={"file": ("c.csv", "sku,name\n1,x\n", "text/csv")}
    )
    assert bad.status_code == 422 and "store_id" in bad.json()["detail"][0]["msg"]


def test_promotion_lifecycle(client, rds, api_settings):
    store = unique("store")
    sku = 700_000 + int(store[-6:], 16) % 100_000
    client.post("/products", headers=MARKETER, json=product(store, sku, segment="snacks-" + store))
    res = client.post(
        "/promotions",
        headers=MARKETER,
        json={"sku": sku, "title": "2 for 1", "discount_pct": 50, "radius_ft": 25},
    )
    assert res.status_code == 201, res.text
    promo = res.json()
    pid = promo["pid"]
    assert promo["status"] == "active" and promo["stats"]["sent"] == 0
    value = poll(lambda: read_topic(api_settings, t.PRODUCTS_PROMOTIONS, pid))[-1]
    assert r.decode(r.Promotion, value).sku == sku
    rds.hset(serving.promo_stats(pid), mapping={"sent": 4, serving.reached("redeemed"): 1})
    got = client.get(f"/promotions/{pid}", headers=ANALYST).json()
    assert got["stats"]["conversion"] == 0.25
    assert pid in [
        p["pid"] for p in client.get("/promotions?status=active", headers=MARKETER).json()
    ]
    funnel = client.get(f"/funnel/promotions/{pid}", headers=ANALYST).json()
    assert funnel["funnel"]["sent"] == 4
    res = client.patch(
        f"/promotions/{pid}",
        headers=MARKETER,
        json={"discount_pct": 30, "starts_at": "2999-01-01T00:00:00Z"},
    )
    assert res.status_code == 200 and res.json()["status"] == "scheduled"
    assert res.json()["discount_pct"] == 30
    assert (
        client.post(
            "/promotions",
            headers=MARKETER,
            json={"pid": pid, "sku": sku, "title": "dup", "discount_pct": 5},
        ).status_code
        == 409
    )
    assert client.delete(f"/promotions/{pid}", headers=MARKETER).status_code == 204
    assert client.get(f"/promotions/{pid}", headers=MARKETER).status_code == 404
    values = poll(
        lambda: (v := read_topic(api_settings, t.PRODUCTS_PROMOTIONS, pid)) and v[-1] is None and v
    )
    assert values[-1] is None  # tombstone
    segment_promo = client.post(
        "/promotions",
        headers=MARKETER,
        json={"segment": "snacks-" + store, "title": "snack week", "discount_pct": 10},
    )
    assert segment_promo.status_code == 201


def test_a_product_another_program_just_wrote_can_be_promoted(client, api_settings):
    """The README's marketer tour: `instore produce catalog`, then at once a promotion of one of
    its SKUs. The API's view of the catalog follows the topic a moment behind; it looks at the
    topic's end before answering "not in the catalog" (the tour failed on that race)."""
    store = unique("store")
    skus = [800_000 + int(store[-6:], 16) % 100_000 * 10 + i for i in range(5)]
    producer = command_producer(api_settings)
    for sku in skus:
        produce(producer, t.STORES_PRODUCTS, r.StoreProduct.model_validate(product(store, sku)))
    producer.finish()  # acknowledged by the broker: now it is in the catalog
    for sku in skus:
        res = client.post("/promotions", headers=MARKETER,
                          json={"sku": sku, "title": "new in", "discount_pct": 10})
        assert res.status_code == 201, res.text


def test_a_sync_nobody_serves_says_so(api_settings):
    """Without its reader running the view cannot say it has read to the end: ``sync`` is False
    after its timeout, never a false yes."""
    assert TableView(api_settings).sync(t.STORES_PRODUCTS, 0.2) is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sku": 1, "title": "t", "discount_pct": 0.5}, "discount_pct"),
        ({"sku": 1, "title": "t", "discount_pct": 91}, "discount_pct"),
        ({"sku": 1, "title": "t", "discount_pct": 10, "radius_ft": 2}, "radius_ft"),
        ({"sku": 1, "title": "t", "discount_pct": 10, "radius_ft": 1001}, "radius_ft"),
        (
            {"sku": 1, "title": "t", "discount_pct": 10, "starts_at": 2000, "ends_at": 1000},
            "starts_at",
        ),
        ({"title": "t", "discount_pct": 10}, "sku or a segment"),
        ({"sku": 987_654_321_012, "title": "t", "discount_pct": 10}, "not in the catalog"),
        ({"segment": "no-such-segment-xyz", "title": "t", "discount_pct": 10}, "unknown segment"),
    ],
)
def test_promotion_validation_is_a_clear_422(client, body, field):
    res = client.post("/promotions", headers=MARKETER, json=body)
    assert res.status_code == 422, res.text
    assert field in str(res.json()["detail"])


def test_bulk_csv_with_an_unreadable_header_is_a_422(client):
    """A header line the csv module cannot read (a bare carriage return inside it) is the
    client's error, said in one sentence, not a 500 (found by the schema fuzzer)."""
    res = client.post("/products/bulk", headers=MARKETER,
                      files={"file": ("c.csv", b"sku,store\rid\x00,name\n1,s,n\n")})
    assert res.status_code == 422, res.text
    assert "CSV" in res.json()["detail"][0]["msg"]
