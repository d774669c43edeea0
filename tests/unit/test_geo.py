"""The distance is ksqlDB's GEO_DISTANCE; the grid index returns exactly what a scan returns."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instore.geo import (
    EARTH_RADIUS_KM,
    FT_PER_KM,
    GeoError,
    GridIndex,
    LocalFrame,
    central_angle,
    distance_ft,
    haversine_km,
)


def test_haversine_matches_ksqldb_reference_values() -> None:
    # London -> Paris: ksqlDB's GEO_DISTANCE(51.5072, -0.1276, 48.8566, 2.3522, 'km')
    assert haversine_km(51.5072, -0.1276, 48.8566, 2.3522) == pytest.approx(343.5, abs=0.5)
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    # A quarter of a great circle.
    assert haversine_km(0, 0, 0, 90) == pytest.approx(math.pi / 2 * 6371.0)


def test_feet_use_the_contract_constant() -> None:
    km = haversine_km(51.5, -0.12, 51.5003, -0.12)
    assert distance_ft(51.5, -0.12, 51.5003, -0.12) == km * FT_PER_KM


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (-90.5, 0.0), (0.0, 180.1), (0.0, -181)])
def test_out_of_range_coordinates_are_rejected(lat: float, lon: float) -> None:
    with pytest.raises(GeoError):
        haversine_km(lat, lon, 0.0, 0.0)


@given(st.floats(-500, 500), st.floats(-500, 500))
def test_local_frame_round_trip(x: float, y: float) -> None:
    frame = LocalFrame(51.5, -0.12)
    lat, lon = frame.to_latlon(x, y)
    x2, y2 = frame.to_xy(lat, lon)
    assert x2 == pytest.approx(x, abs=1e-6)
    assert y2 == pytest.approx(y, abs=1e-6)


point = st.tuples(st.floats(-300, 300), st.floats(-300, 300))
radius = st.sampled_from([3.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0]) | st.floats(0.5, 1500)


@settings(max_examples=150, deadline=None)
@given(
    anchor=st.tuples(st.floats(-70, 70), st.floats(-179, 179)),
    points=st.lists(st.tuples(point, radius), min_size=0, max_size=60),
    queries=st.lists(point, min_size=1, max_size=20),
)
def test_index_equals_brute_force(anchor: tuple[float, float], points: list, queries: list) -> None:
    frame = LocalFrame(*anchor)
    pts = []
    for i, ((x, y), r_ft) in enumerate(points):
        lat, lon = frame.to_latlon(x, y)
        pts.append((i, lat, lon, r_ft))
    index = GridIndex.build(pts)
    for qx, qy in queries:
        lat, lon = frame.to_latlon(qx, qy)
        got = sorted(k for k, _ in index.within(lat, lon))
        want = sorted(k for k, plat, plon, r in pts if distance_ft(lat, lon, plat, plon) <= r)
        assert got == want


def test_boundary_is_inclusive_in_feet() -> None:
    frame = LocalFrame(51.5, -0.12)
    plat, plon = frame.to_latlon(0, 0)
    # A point whose exact haversine distance is the radius itself is in.
    qlat, qlon = frame.to_latlon(0, 20)
    d = distance_ft(qlat, qlon, plat, plon)
    index = GridIndex.build([("p", plat, plon, d)])
    assert [k for k, _ in index.within(qlat, qlon)] == ["p"]
    index = GridIndex.build([("p", plat, plon, d * (1 - 1e-12))])
    assert index.within(qlat, qlon) == []


def test_the_grid_index_distance_is_geo_distance_to_the_bit() -> None:
    """The worker's grid index and ksqlDB's GEO_DISTANCE(..., 'km') * ft/km give the same
    float for every pair (one haversine: angle_with_cosines), so both engines keep or drop a
    product at a radius' edge alike."""
    rnd = random.Random(1)
    pts = [(i, 51.5 + rnd.uniform(-1e-3, 1e-3), -0.12 + rnd.uniform(-1e-3, 1e-3), 200.0)
           for i in range(200)]
    index = GridIndex.build(pts)
    pairs = 0
    for _ in range(300):
        lat, lon = 51.5 + rnd.uniform(-1e-3, 1e-3), -0.12 + rnd.uniform(-1e-3, 1e-3)
        for key, d_ft in index.within(lat, lon):
            _, plat, plon, _ = pts[key]
            assert d_ft == central_angle(lat, lon, plat, plon) * EARTH_RADIUS_KM * FT_PER_KM
            pairs += 1
    assert pairs > 10_000
