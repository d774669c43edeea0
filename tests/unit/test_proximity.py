"""DESIGN.md's proximity rule through ProximityState (the index) against a brute-force scan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instore.geo import LocalFrame, distance_ft
from instore.proximity import ProximityState, UnknownStore
from instore.records import CustomerLocation, NearbyCustomer, Promotion, StoreProduct

T0 = 1_767_225_600_000
FRAME = LocalFrame(51.5, -0.12)


def product(sku: int, x: float, y: float, store: str = "s1", segment: str = "coffee",
            frame: LocalFrame = FRAME) -> StoreProduct:
    lat, lon = frame.to_latlon(x, y)
    return StoreProduct(sku=sku, store_id=store, segment=segment, name=f"p{sku}", latitude=lat,
                        longitude=lon, country="GB")


def at(x: float, y: float, uid: str = "u1", store: str | None = "s1",
       frame: LocalFrame = FRAME) -> CustomerLocation:
    lat, lon = frame.to_latlon(x, y)
    return CustomerLocation(uid=uid, store_id=store, latitude=lat, longitude=lon, country="GB",
                            ts=T0)


def state_with(*items: StoreProduct | Promotion) -> ProximityState:
    s = ProximityState()
    for item in items:
        if isinstance(item, StoreProduct):
            s.upsert_product(item)
        else:
            s.upsert_promotion(item)
    return s


def test_radius_boundary_in_and_out() -> None:
    p = product(1, 0, 0)
    s = state_with(p, Promotion(pid="q", sku=1, title="t", discount_pct=10, radius_ft=100))
    m_per_ft = 0.3048
    inside, outside = at(0, 99.9 * m_per_ft), at(0, 100.1 * m_per_ft)
    assert distance_ft(inside.latitude, inside.longitude, p.latitude, p.longitude) < 100
    assert [r.pid for r in s.match(inside, T0)] == ["q"]
    assert s.match(outside, T0) == []


def test_schedule_start_inclusive_end_exclusive() -> None:
    q = Promotion(pid="q", sku=1, title="t", discount_pct=10, starts_at=T0, ends_at=T0 + 1000)
    s = state_with(product(1, 0, 0), q)
    assert s.match(at(0, 1), T0 - 1) == []
    assert len(s.match(at(0, 1), T0)) == 1
    assert len(s.match(at(0, 1), T0 + 999)) == 1
    assert s.match(at(0, 1), T0 + 1000) == []


def test_sku_and_segment_promotions() -> None:
    s = state_with(
        product(1, 0, 0, segment="coffee"), product(2, 1, 0, segment="coffee"),
        product(3, 2, 0, segment="tea"),
        Promotion(pid="by-sku", sku=3, segment="coffee", title="t", discount_pct=5),
        Promotion(pid="by-seg", sku=None, segment="coffee", title="t", discount_pct=5),
    )
    rows = sorted((r.pid, r.sku) for r in s.match(at(1, 1), T0))
    # A SKU promotion ignores its segment; a segment promotion covers every product in it.
    assert rows == [("by-seg", 1), ("by-seg", 2), ("by-sku", 3)]


def test_same_sku_in_two_stores_far_apart() -> None:
    far = LocalFrame(53.48, -2.24)
    s = state_with(product(1, 0, 0, store="london"), product(1, 0, 0, store="manchester", frame=far),
                   Promotion(pid="q", sku=1, title="t", discount_pct=10))
    rows = s.match(at(0, 5, store="manchester", frame=far), T0)
    assert [(r.store_id, r.pid) for r in rows] == [("manchester", "q")]
    assert [r.store_id for r in s.match(at(0, 5, store="london"), T0)] == ["london"]


def test_position_without_store_is_placed_by_geofence_and_unknown_store_raises() -> None:
    s = state_with(product(1, 0, 0), product(2, 50, 30),
                   Promotion(pid="q", sku=1, title="t", discount_pct=10))
    assert [r.store_id for r in s.match(at(0, 3, store=None), T0)] == ["s1"]
    with pytest.raises(UnknownStore):
        s.match(at(0, 3, store="nowhere"), T0)
    with pytest.raises(UnknownStore):
        s.match(at(5000, 5000, store=None), T0)


def test_tombstones_remove_promotions_and_products() -> None:
    s = state_with(product(1, 0, 0), Promotion(pid="q", sku=1, title="t", discount_pct=10))
    assert s.match(at(0, 1), T0)
    s.delete_promotion("q")
    assert s.match(at(0, 1), T0) == []
    s.upsert_promotion(Promotion(pid="q", sku=1, title="t", discount_pct=10))
    s.delete_product("s1", 1)
    with pytest.raises(UnknownStore):  # the store has no products left
        s.match(at(0, 1), T0)


def test_rows_are_valid_contract_records() -> None:
    s = state_with(product(1, 0, 0), Promotion(pid="q", sku=1, title="t", discount_pct=10))
    (row,) = s.match_rows(at(0, 1), T0)
    rec = NearbyCustomer.model_validate(row)
    assert set(row) == set(NearbyCustomer.model_fields)
    assert rec.ts == T0 and rec.uid == "u1" and rec.country == "GB"


coord = st.floats(-40, 40)


@settings(max_examples=60, deadline=None)
@given(
    prods=st.lists(st.tuples(coord, coord, st.sampled_from(["a", "b", "c"])), min_size=1,
                   max_size=40),
    promos=st.lists(st.tuples(st.integers(0, 45), st.sampled_from(["a", "b", None]),
                              st.sampled_from([10.0, 25.0, 50.0, 100.0, 3.0]),
                              st.booleans()), max_size=12),
    queries=st.lists(st.tuples(coord, coord), min_size=1, max_size=10),
)
def test_index_matches_brute_force_rule(prods: list, promos: list, queries: list) -> None:
    s = ProximityState()
    for i, (x, y, seg) in enumerate(prods):
        s.upsert_product(product(i, x, y, segment=seg))
    for j, (sku, seg, r, scheduled) in enumerate(promos):
        s.upsert_promotion(Promotion(
            pid=f"q{j}", sku=None if seg is not None and sku % 2 else sku,
            segment=seg or "a", title="t", discount_pct=10, radius_ft=r,
            starts_at=T0 + 1 if scheduled else None))
    for x, y in queries:
        pos = at(x, y)
        got = sorted((r["pid"], r["sku"]) for r in s.match_rows(pos, T0))
        want = sorted((pid, sku) for pid, sku, _ in s.brute_force(pos, T0))
        naive = sorted((r["pid"], r["sku"]) for r in s.match_rows_naive(pos, T0))
        assert got == want == naive


@settings(max_examples=40, deadline=None)
@given(
    prods=st.lists(st.tuples(coord, coord, st.sampled_from(["a", "b"])), min_size=1, max_size=20),
    queries=st.lists(st.tuples(coord, coord, st.booleans(), st.text(min_size=1, max_size=8)),
                     min_size=1, max_size=8),
)
def test_serialized_rows_equal_the_records(prods: list, queries: list) -> None:
    import orjson

    s = ProximityState()
    for i, (x, y, seg) in enumerate(prods):
        s.upsert_product(product(i, x, y, segment=seg))
    s.upsert_promotion(Promotion(pid="seg-a", segment="a", title="t", discount_pct=5))
    s.upsert_promotion(Promotion(pid="sku-0", sku=0, title="t", discount_pct=5, radius_ft=50))
    for x, y, with_country, uid in queries:
        pos = at(x, y, uid=uid)
        if not with_country:
            pos = pos.model_copy(update={"country": None})
        rows = s.match_rows(pos, T0)
        blobs = s.match_json(pos, T0)
        assert [orjson.loads(b) for b in blobs] == rows
        for b in blobs:
            NearbyCustomer.model_validate_json(b)
