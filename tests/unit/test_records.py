"""Decoding at the edge: every bad input becomes a RecordError with a reason."""

from __future__ import annotations

import pytest

from instore import topics as t
from instore.records import CustomerLocation, Promotion, RecordError, decode


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"uid": "u", "latitude": 91, "longitude": 0}', "latitude"),
    (b'{"uid": "u", "latitude": 1}', "longitude: Field required"),
    (b'{"uid": "", "latitude": 1, "longitude": 2}', "uid"),
    (b'{"uid": "u", "latitude": "NaN", "longitude": 2}', "latitude"),
    (None, "tombstone"),
])
def test_bad_positions(raw: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError) as err:
        decode(CustomerLocation, raw)
    assert reason in err.value.reason


def test_seed_shape_position_is_accepted() -> None:
    pos = decode(CustomerLocation, b'{"uid": 7, "latitude": 51.5, "longitude": -0.1, "country": "GB"}')
    assert pos.uid == "7" and pos.store_id is None and pos.ts is None and pos.source == "sim"


def test_promotion_needs_a_target_and_an_ordered_schedule() -> None:
    with pytest.raises(RecordError, match="sku or a segment"):
        decode(Promotion, b'{"pid": "p", "title": "t", "discount_pct": 5}')
    with pytest.raises(RecordError, match="before"):
        decode(Promotion, b'{"pid": "p", "sku": 1, "title": "t", "discount_pct": 5,'
                          b' "starts_at": 10, "ends_at": 10}')
    q = decode(Promotion, b'{"pid": "p", "sku": 1, "title": "t", "discount_pct": 5}')
    assert q.radius_ft == 100.0


def test_contract_keys() -> None:
    assert t.STORES_PRODUCTS.key_of({"store_id": "s1", "sku": 42}) == "s1:42"
    assert t.KIOSK_INTERACTIONS.key_of({"store_id": "s1", "kiosk_id": "k"}) == "s1:k"
    assert {x.name for x in t.ALL if x.compacted} == {
        "stores_products", "products_promotions", "shopper_consents"}
    assert t.NEARBY_CUSTOMERS.name == "NEARBY_CUSTOMERS"
