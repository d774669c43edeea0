"""Edge calibration on a synthetic floor: plane, floor -> store, save/load, refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge.calibration import (
    Calibration,
    CalibrationError,
    ReferencePoint,
    calibrate,
    calibrate_synthetic,
)
from edge.geometry import GeoAnchor
from edge.scene import default_scene
from edge.sources import SyntheticSource


@pytest.fixture(scope="module")
def synthetic() -> tuple[SyntheticSource, Calibration, np.ndarray]:
    scene = default_scene("640x480", people=0, seconds=0.2)
    src = SyntheticSource(scene)
    cal, background = calibrate_synthetic(src)
    yield src, cal, background
    src.close()


def test_plane_and_pose_are_recovered(synthetic: tuple[SyntheticSource, Calibration, np.ndarray]
                                      ) -> None:
    src, cal, _ = synthetic
    pose = src.scene.pose
    assert cal.plane_offset == pytest.approx(pose.position[2], abs=0.02)  # camera height
    up_in_camera = pose.r.T @ np.array([0.0, 0.0, 1.0])
    assert float(cal.plane.n @ up_in_camera) > 0.9995
    assert cal.inlier_fraction > 0.4  # the rest is shelves and the kiosk
    assert cal.residual_m < 0.02
    # the camera's nadir lands under the camera, in store metres
    nadir = cal.floor_to_store_xy(np.zeros((1, 2)))[0]
    assert math.hypot(nadir[0] - pose.position[0], nadir[1] - pose.position[1]) < 0.03


def test_markers_and_arbitrary_floor_points_map_to_the_store(
        synthetic: tuple[SyntheticSource, Calibration, np.ndarray]) -> None:
    src, cal, _ = synthetic
    scene = src.scene
    intr = scene.intrinsics
    rng = np.random.default_rng(2)
    pts = rng.uniform([10.8, 19.2], [13.2, 22.5], size=(50, 2))
    cam = scene.pose.world_to_camera(np.column_stack([pts, np.zeros(len(pts))]))
    u = cam[:, 0] / cam[:, 2] * intr.fx + intr.ppx
    v = cam[:, 1] / cam[:, 2] * intr.fy + intr.ppy
    est = cal.floor_to_store_xy(cal.floor.pixel_to_floor(intr, u, v))
    err = np.hypot(*(est - pts).T)
    assert err.max() < 0.03


def test_save_and_load_round_trip(tmp_path: Path,
                                  synthetic: tuple[SyntheticSource, Calibration, np.ndarray]
                                  ) -> None:
    _, cal, background = synthetic
    path = cal.save(tmp_path / "edge" / "calibration.json", background)
    loaded = Calibration.load(path)
    assert loaded.model_dump() == cal.model_dump() | {"background_file": loaded.background_file}
    bg = loaded.load_background(path)
    assert bg is not None and bg.shape == background.shape
    assert np.abs(bg - background).max() <= 0.0006  # millimetres on disk
    assert loaded.kiosks["k1"] == pytest.approx(cal.kiosks["k1"])


def test_missing_calibration_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="instore edge calibrate"):
        Calibration.load(tmp_path / "nope.json")


def test_refuses_too_few_references_and_wrong_size(
        synthetic: tuple[SyntheticSource, Calibration, np.ndarray]) -> None:
    src, _, background = synthetic
    intr = src.scene.intrinsics
    one = [ReferencePoint(u=100, v=100, x=1, y=1)]
    with pytest.raises(CalibrationError, match="two or more"):
        calibrate(background, intr, one, store_id="s", anchor=GeoAnchor(0, 0))
    with pytest.raises(CalibrationError, match="depth image"):
        calibrate(background[::2, ::2], intr, one * 2, store_id="s", anchor=GeoAnchor(0, 0))
    above_horizon = [ReferencePoint(u=320, v=-5000, x=0, y=0), ReferencePoint(u=1, v=1, x=1, y=1)]
    with pytest.raises(CalibrationError, match="horizon"):
        calibrate(background, intr, above_horizon, store_id="s", anchor=GeoAnchor(0, 0))
