"""The edge box's calibration: camera intrinsics, floor plane, floor -> store -> lat/lon, kiosks.

``calibrate`` needs one depth frame (or the median of a few) of the empty floor and two or
more reference points: a pixel where a floor marker is seen and that marker's position in
store metres. It fits the floor plane with RANSAC, intersects the reference pixels' rays with
it and fits the 2D rigid transform floor -> store. The result is saved as JSON, with the
empty-floor depth (the detection background) next to it as a compressed ``.npz`` (depth only).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from edge.geometry import (
    FloorFrame,
    GeoAnchor,
    GeometryError,
    Intrinsics,
    Plane,
    Rigid2D,
    fit_plane_ransac,
)
from instore.errors import InstoreError

log = logging.getLogger(__name__)
FloatArray = np.ndarray


class CalibrationError(InstoreError, ValueError):
    """A calibration that cannot be made or loaded; the message says what to do."""


class ReferencePoint(BaseModel):
    u: float
    v: float
    x: float  # store metres
    y: float


class Calibration(BaseModel):
    store_id: str
    country: str | None = None
    anchor_lat: float = Field(ge=-90, le=90)
    anchor_lon: float = Field(ge=-180, le=180)
    bearing_deg: float = 0.0
    intrinsics: dict[str, Any]
    depth_scale: float = 0.001
    plane_normal: tuple[float, float, float]
    plane_offset: float
    floor_to_store: tuple[float, float, float]  # theta (rad), tx, ty
    residual_m: float = 0.0
    inlier_fraction: float = 0.0
    kiosks: dict[str, tuple[float, float]] = Field(default_factory=dict)  # store metres
    references: list[ReferencePoint] = Field(default_factory=list)
    background_file: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    # ------------------------------------------------------------------ derived objects
    @property
    def intr(self) -> Intrinsics:
        return Intrinsics.from_dict(self.intrinsics)

    @property
    def plane(self) -> Plane:
        return Plane(self.plane_normal, self.plane_offset)

    @property
    def floor(self) -> FloorFrame:
        return FloorFrame(self.plane)

    @property
    def rigid(self) -> Rigid2D:
        return Rigid2D(*self.floor_to_store)

    @property
    def anchor(self) -> GeoAnchor:
        return GeoAnchor(self.anchor_lat, self.anchor_lon, self.bearing_deg)

    def floor_to_store_xy(self, xy: FloatArray) -> FloatArray:
        return self.rigid.apply(np.asarray(xy, dtype=np.float64).reshape(-1, 2))

    def store_to_floor_xy(self, xy: FloatArray) -> FloatArray:
        return self.rigid.inverse(np.asarray(xy, dtype=np.float64).reshape(-1, 2))

    def kiosk_floor(self, kiosk_id: str) -> FloatArray | None:
        k = self.kiosks.get(kiosk_id)
        return None if k is None else self.store_to_floor_xy(np.array([k]))[0]

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path, background_m: FloatArray | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if background_m is not None:
            bg_path = path.with_suffix(".background.npz")
            mm = np.round(np.asarray(background_m) * 1000.0).clip(0, 65535).astype(np.uint16)
            np.savez_compressed(bg_path, depth_mm=mm)
            self.background_file = bg_path.name
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        path = Path(path)
        if not path.exists():
            msg = f"no calibration at {path}; run `instore edge calibrate` first"
            raise CalibrationError(msg)
        return cls.model_validate_json(path.read_text())

    def load_background(self, path: Path) -> FloatArray | None:
        if not self.background_file:
            return None
        bg_path = Path(path).parent / self.background_file
        if not bg_path.exists():
            log.warning("calibration background %s missing; using the floor plane", bg_path.name)
            return None
        with np.load(bg_path) as z:
            return z["depth_mm"].astype(np.float32) / 1000.0


def median_depth(frames: list[FloatArray], depth_scale: float) -> FloatArray:
    """Per-pixel median of valid depth over a few frames (metres; 0 where never valid)."""
    stack = np.stack([f.astype(np.float32) * depth_scale for f in frames])
    stack[stack <= 0] = np.nan
    with np.errstate(all="ignore"):
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(stack, axis=0)
    return np.nan_to_num(med, nan=0.0).astype(np.float32)


def calibrate(depth_m: FloatArray, intr: Intrinsics, references: list[ReferencePoint], *,
              store_id: str, anchor: GeoAnchor, country: str | None = None,
              kiosks: dict[str, tuple[float, float]] | None = None, depth_scale: float = 0.001,
              seed: int = 0) -> Calibration:
    """Fit floor plane and floor -> store transform from an empty-floor depth image (metres)."""
    if depth_m.shape != (intr.height, intr.width):
        msg = (f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]}, "
               f"intrinsics say {intr.width}x{intr.height}")
        raise CalibrationError(msg)
    if len(references) < 2:
        msg = "give two or more reference points: --ref U,V=X,Y (pixel = store metres)"
        raise CalibrationError(msg)
    step = 4
    sub = depth_m[::step, ::step]
    vv, uu = np.nonzero(sub > 0)
    z = sub[vv, uu]
    from edge.geometry import deproject  # noqa: PLC0415

    pts = deproject(intr, uu * step, vv * step, z)
    try:
        plane, inliers = fit_plane_ransac(pts, seed=seed)
        floor = FloorFrame(plane)
        ref_floor = floor.pixel_to_floor(intr, np.array([r.u for r in references]),
                                         np.array([r.v for r in references]))
        rigid, residual = Rigid2D.fit(ref_floor, np.array([[r.x, r.y] for r in references]))
    except GeometryError as exc:
        raise CalibrationError(str(exc)) from None
    log.info("calibrated: camera %.2f m above the floor, inliers %.0f%%, residual %.3f m",
             plane.offset, inliers * 100, residual)
    return Calibration(
        store_id=store_id, country=country, anchor_lat=anchor.latitude,
        anchor_lon=anchor.longitude, bearing_deg=anchor.bearing_deg,
        intrinsics=intr.to_dict(), depth_scale=depth_scale,
        plane_normal=plane.normal, plane_offset=plane.offset,
        floor_to_store=(rigid.theta, rigid.tx, rigid.ty), residual_m=residual,
        inlier_fraction=inliers, kiosks=dict(kiosks or {}), references=list(references),
    )


def calibrate_synthetic(source: Any, frames: int = 5) -> tuple[Calibration, FloatArray]:
    """Calibrate from a ``SyntheticSource``: its empty floor and its floor markers as references
    (pixel positions rounded to whole pixels, as an installer would click them)."""
    scene = source.scene
    intr = scene.intrinsics
    background = median_depth(source.empty_frames(frames), source.depth_scale)
    refs = []
    for mx, my in scene.markers.values():
        cam = scene.pose.world_to_camera(np.array([[mx, my, 0.0]]))[0]
        u = round(cam[0] / cam[2] * intr.fx + intr.ppx)
        v = round(cam[1] / cam[2] * intr.fy + intr.ppy)
        if 0 <= u < intr.width and 0 <= v < intr.height:
            refs.append(ReferencePoint(u=u, v=v, x=mx, y=my))
    cal = calibrate(background, intr, refs, store_id=scene.store_id, anchor=scene.anchor,
                    country=scene.country, kiosks=dict(scene.kiosks),
                    depth_scale=source.depth_scale, seed=scene.seed)
    return cal, background
