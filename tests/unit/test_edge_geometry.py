"""Edge geometry: deprojection as pyrealsense2 does it, floor plane, floor <-> store <-> lat/lon."""

from __future__ import annotations

import math

import numpy as np
import pyrealsense2 as rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.geometry import (
    FloorFrame,
    GeoAnchor,
    GeometryError,
    Intrinsics,
    Rigid2D,
    deproject,
    fit_plane_ransac,
    project,
)
from edge.scene import RESOLUTIONS, CameraPose
from instore.geo import haversine_km

INTR = RESOLUTIONS["640x480"]


def test_deproject_matches_pyrealsense2() -> None:
    rs_intr = INTR.to_rs()
    for u, v, z in [(0, 0, 1.0), (319.5, 239.5, 2.5), (600, 30, 4.2), (17.25, 470.5, 0.8)]:
        ours = deproject(INTR, np.array([u]), np.array([v]), np.array([z]))[0]
        theirs = rs.rs2_deproject_pixel_to_point(rs_intr, [u, v], z)
        assert np.allclose(ours, theirs, atol=1e-5)
        pu, pv = project(INTR, ours[None])
        back = rs.rs2_project_point_to_pixel(rs_intr, list(ours))
        assert np.allclose([pu[0], pv[0]], back, atol=1e-4)
        assert np.allclose([pu[0], pv[0]], [u, v], atol=1e-6)


def test_intrinsics_survive_rs_and_json() -> None:
    assert Intrinsics.from_rs(INTR.to_rs()) == INTR
    assert Intrinsics.from_dict(INTR.to_dict()) == INTR


def _floor_points(pose: CameraPose, n: int, rng: np.random.Generator) -> np.ndarray:
    xy = rng.uniform(-3, 3, size=(n, 2)) + np.array(pose.position[:2])
    world = np.column_stack([xy, np.zeros(n)])
    return pose.world_to_camera(world)


def test_ransac_finds_the_floor_among_clutter() -> None:
    rng = np.random.default_rng(3)
    pose = CameraPose.looking_down(0.0, 0.0, 3.7, tilt_deg=22.0, yaw_deg=40.0)
    floor = _floor_points(pose, 3000, rng)
    floor[:, 2] += rng.normal(0, 0.01, len(floor))  # depth noise
    shelf = pose.world_to_camera(np.column_stack([rng.uniform(1, 2, 1500), rng.uniform(-2, 2, 1500),
                                                  rng.uniform(0.2, 1.8, 1500)]))
    plane, inliers = fit_plane_ransac(np.vstack([floor, shelf]), seed=1)
    assert plane.offset == pytest.approx(3.7, abs=0.02)
    assert 0.55 < inliers < 0.75
    up_in_camera = pose.r.T @ np.array([0.0, 0.0, 1.0])
    assert float(plane.n @ up_in_camera) > 0.999


def test_ransac_refuses_too_few_points() -> None:
    with pytest.raises(GeometryError):
        fit_plane_ransac(np.zeros((10, 3)))


def test_pixel_to_floor_to_latlon_and_back() -> None:
    """pixel -> camera point -> floor -> store -> lat/lon -> store -> floor -> pixel."""
    pose = CameraPose.looking_down(12.0, 20.0, 4.0, tilt_deg=15.0, yaw_deg=10.0)
    rng = np.random.default_rng(0)
    plane, _ = fit_plane_ransac(_floor_points(pose, 4000, rng))
    ff = FloorFrame(plane)
    # the floor frame's rigid map to the store, from two markers
    markers = np.array([[11.0, 19.5], [13.2, 22.0], [12.5, 21.0]])
    cam = pose.world_to_camera(np.column_stack([markers, np.zeros(3)]))
    mu, mv = project(INTR, cam)
    rigid, residual = Rigid2D.fit(ff.pixel_to_floor(INTR, mu, mv), markers)
    assert residual < 1e-6
    anchor = GeoAnchor(51.501, -0.142, 30.0)
    for u, v in [(100.0, 80.0), (320.0, 240.0), (600.0, 400.0)]:
        fxy = ff.pixel_to_floor(INTR, np.array([u]), np.array([v]))
        # through a depth value too: the point on the floor deprojected from (u, v, z)
        p_cam = ff.to_camera(fxy)[0]
        p_dep = deproject(INTR, np.array([u]), np.array([v]), np.array([p_cam[2]]))[0]
        assert np.allclose(p_dep, p_cam, atol=1e-6)
        assert abs(ff.to_floor(p_dep[None])[0, 2]) < 1e-6  # on the floor
        sxy = rigid.apply(fxy)[0]
        lat, lon = anchor.to_latlon(*sxy)
        sx, sy = anchor.to_store(lat, lon)
        assert math.hypot(sx - sxy[0], sy - sxy[1]) < 1e-6
        back = rigid.inverse(np.array([[sx, sy]]))
        assert np.allclose(back, fxy, atol=1e-6)
        pu, pv = project(INTR, ff.to_camera(back))
        assert abs(pu[0] - u) < 1e-5 and abs(pv[0] - v) < 1e-5
        # and the store point is where the camera pose says it is
        world = pose.c + pose.r @ p_cam
        assert np.allclose(world[:2], sxy, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(x=st.floats(-200, 200), y=st.floats(-200, 200), bearing=st.floats(0, 360),
       lat=st.floats(-60, 60), lon=st.floats(-179, 179))
def test_geo_anchor_round_trip_and_distance(x: float, y: float, bearing: float, lat: float,
                                            lon: float) -> None:
    anchor = GeoAnchor(lat, lon, bearing)
    plat, plon = anchor.to_latlon(x, y)
    bx, by = anchor.to_store(plat, plon)
    assert math.hypot(bx - x, by - y) < 1e-6
    # the proximity rule's haversine agrees with the ellipsoid to within 0.6 % over a store
    r = math.hypot(x, y)
    if r > 1.0:
        h = haversine_km(lat, lon, plat, plon) * 1000
        assert abs(h - r) / r < 0.006


def test_bearing_orients_the_store() -> None:
    north = GeoAnchor(50.0, 8.0, 0.0)
    lat, lon = north.to_latlon(0.0, 100.0)  # +y is north
    assert lat > 50.0 and abs(lon - 8.0) < 1e-9
    east = GeoAnchor(50.0, 8.0, 90.0)
    lat, lon = east.to_latlon(0.0, 100.0)  # +y is east
    assert lon > 8.0 and abs(lat - 50.0) < 1e-4


def test_rigid_fit_recovers_rotation_and_refuses_degenerate_points() -> None:
    true = Rigid2D(0.7, 3.0, -2.0)
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    fitted, residual = Rigid2D.fit(src, true.apply(src))
    assert residual < 1e-9
    assert fitted.theta == pytest.approx(0.7) and fitted.tx == pytest.approx(3.0)
    with pytest.raises(GeometryError):
        Rigid2D.fit(src[:1], src[:1])
    with pytest.raises(GeometryError):
        Rigid2D.fit(np.array([[0.0, 0.0], [0.05, 0.0]]), np.array([[1.0, 1.0], [1.05, 1.0]]))
