"""Camera and floor geometry: deprojection, the floor plane, floor metres, store metres, lat/lon.

Frames, from the camera outwards:

- **camera**: RealSense convention, metres, x right, y down, z forward (``depth`` is z).
- **floor**: metres on the fitted floor plane, origin under the camera (its nadir), x along the
  camera's x axis projected on the floor, y = up x x (so x, y, up is right-handed), h = height.
- **store**: the store's own metres (x to the right of the store's bearing, y along it), from
  the floor frame by a 2D rigid transform fitted to reference points.
- **geo**: latitude/longitude from the store's anchor (store origin) and bearing, on the WGS84
  ellipsoid with geopy.

All functions are vectorised over numpy arrays and do no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from geographiclib.geodesic import Geodesic
from geopy.distance import geodesic

from instore.errors import InstoreError

FloatArray = np.ndarray


class GeometryError(InstoreError, ValueError):
    """Geometry that cannot be computed (no plane, degenerate reference points, ...)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics (RealSense ``rs.intrinsics``); depth streams have no distortion."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str = "none"
    coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_rs(cls, intr: Any) -> Intrinsics:
        return cls(int(intr.width), int(intr.height), float(intr.fx), float(intr.fy),
                   float(intr.ppx), float(intr.ppy), str(intr.model).split(".")[-1],
                   tuple(float(c) for c in intr.coeffs))

    def to_rs(self) -> Any:
        import pyrealsense2 as rs  # noqa: PLC0415

        intr = rs.intrinsics()
        intr.width, intr.height = self.width, self.height
        intr.fx, intr.fy, intr.ppx, intr.ppy = self.fx, self.fy, self.ppx, self.ppy
        intr.model = getattr(rs.distortion, self.model, rs.distortion.none)
        intr.coeffs = list(self.coeffs)
        return intr

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "ppx": self.ppx, "ppy": self.ppy, "model": self.model, "coeffs": list(self.coeffs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intrinsics:
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]),
                   float(d["ppx"]), float(d["ppy"]), str(d.get("model", "none")),
                   tuple(float(c) for c in d.get("coeffs", (0.0,) * 5)))

    def ray_grid(self, step: int = 1) -> tuple[FloatArray, FloatArray]:
        """(x/z, y/z) of the ray through every ``step``-th pixel, shape (H/step, W/step)."""
        u = (np.arange(0, self.width, step, dtype=np.float32) - self.ppx) / self.fx
        v = (np.arange(0, self.height, step, dtype=np.float32) - self.ppy) / self.fy
        rx, ry = np.meshgrid(u, v)
        return rx.astype(np.float32), ry.astype(np.float32)


def deproject(intr: Intrinsics, u: FloatArray, v: FloatArray, depth_m: FloatArray) -> FloatArray:
    """Pixels + depth (metres) -> camera points (N, 3), as rs2_deproject_pixel_to_point does
    without distortion."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    z = np.asarray(depth_m, dtype=np.float64)
    return np.stack([(u - intr.ppx) / intr.fx * z, (v - intr.ppy) / intr.fy * z, z], axis=-1)


def project(intr: Intrinsics, points: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Camera points (N, 3) -> pixel (u, v); rs2_project_point_to_pixel, no distortion."""
    p = np.asarray(points, dtype=np.float64)
    return p[..., 0] / p[..., 2] * intr.fx + intr.ppx, p[..., 1] / p[..., 2] * intr.fy + intr.ppy


@dataclass(frozen=True)
class Plane:
    """``normal . p + offset = 0`` with the unit normal pointing towards the camera (up)."""

    normal: tuple[float, float, float]
    offset: float

    @property
    def n(self) -> FloatArray:
        return np.asarray(self.normal, dtype=np.float64)

    def height(self, points: FloatArray) -> FloatArray:
        return np.asarray(points, dtype=np.float64) @ self.n + self.offset


def _plane_from(points: FloatArray) -> tuple[FloatArray, float]:
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid, full_matrices=False)
    n = vt[-1]
    d = -float(n @ centroid)
    if d < 0:  # camera (origin) on the positive side
        n, d = -n, -d
    return n, d


def fit_plane_ransac(points: FloatArray, *, iterations: int = 200, tolerance_m: float = 0.02,
                     seed: int = 0, max_points: int = 20_000) -> tuple[Plane, float]:
    """RANSAC the dominant plane of ``points`` (N, 3); returns it and the inlier fraction.

    The largest plane seen by a ceiling camera over an empty floor is the floor; shelves and
    walls are smaller. The winner is refined by least squares on its inliers.
    """
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(axis=1) & (pts[:, 2] > 0)]
    if len(pts) < 50:
        msg = f"too few valid depth points to fit a floor ({len(pts)})"
        raise GeometryError(msg)
    rng = np.random.default_rng(seed)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    tri = pts[rng.integers(0, len(pts), size=(iterations, 3))]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-9
    normals = normals[ok] / norms[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, tri[ok, 0])
    if len(normals) == 0:
        msg = "degenerate depth points: no plane"
        raise GeometryError(msg)
    dist = np.abs(pts @ normals.T + offsets)  # (N, iterations)
    counts = (dist < tolerance_m).sum(axis=0)
    best = int(np.argmax(counts))
    inliers = dist[:, best] < tolerance_m
    n, d = _plane_from(pts[inliers])
    inliers = np.abs(pts @ n + d) < tolerance_m
    n, d = _plane_from(pts[inliers])
    return Plane((float(n[0]), float(n[1]), float(n[2])), float(d)), float(inliers.mean())


@dataclass(frozen=True)
class FloorFrame:
    """Floor metres from the plane: origin at the camera's nadir, axes as in the module doc."""

    plane: Plane
    ex: FloatArray = field(init=False, repr=False)
    ey: FloatArray = field(init=False, repr=False)
    origin: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.plane.n
        cam_x = np.array([1.0, 0.0, 0.0])
        ex = cam_x - (cam_x @ n) * n
        if np.linalg.norm(ex) < 1e-6:  # camera x parallel to the normal: use its z
            cam_z = np.array([0.0, 0.0, 1.0])
            ex = cam_z - (cam_z @ n) * n
        ex = ex / np.linalg.norm(ex)
        object.__setattr__(self, "ex", ex)
        object.__setattr__(self, "ey", np.cross(n, ex))
        object.__setattr__(self, "origin", -self.plane.offset * n)

    @property
    def camera_height(self) -> float:
        return self.plane.offset

    def to_floor(self, points: FloatArray) -> FloatArray:
        """Camera points (N, 3) -> floor (N, 3): x, y on the floor and h above it."""
        p = np.asarray(points, dtype=np.float64) - self.origin
        return np.stack([p @ self.ex, p @ self.ey, p @ self.plane.n], axis=-1)

    def to_camera(self, floor: FloatArray) -> FloatArray:
        """Floor (N, 2) or (N, 3) -> camera points."""
        f = np.asarray(floor, dtype=np.float64)
        h = f[..., 2:3] if f.shape[-1] == 3 else 0.0
        return self.origin + f[..., 0:1] * self.ex + f[..., 1:2] * self.ey + h * self.plane.n

    def pixel_to_floor(self, intr: Intrinsics, u: FloatArray, v: FloatArray) -> FloatArray:
        """Where the rays through pixels (u, v) meet the floor plane, floor (N, 2)."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        rays = np.stack([(u - intr.ppx) / intr.fx, (v - intr.ppy) / intr.fy, np.ones_like(u)], -1)
        denom = rays @ self.plane.n
        if np.any(denom >= -1e-9):
            msg = "a reference pixel looks above the horizon: it never meets the floor"
            raise GeometryError(msg)
        s = -self.plane.offset / denom
        return self.to_floor(rays * s[..., None])[..., :2]


@dataclass(frozen=True)
class Rigid2D:
    """store = R(theta) @ floor + (tx, ty)."""

    theta: float
    tx: float
    ty: float

    @property
    def r(self) -> FloatArray:
        c, s = math.cos(self.theta), math.sin(self.theta)
        return np.array([[c, -s], [s, c]])

    def apply(self, xy: FloatArray) -> FloatArray:
        return np.asarray(xy, dtype=np.float64) @ self.r.T + np.array([self.tx, self.ty])

    def inverse(self, xy: FloatArray) -> FloatArray:
        return (np.asarray(xy, dtype=np.float64) - np.array([self.tx, self.ty])) @ self.r

    @classmethod
    def fit(cls, src: FloatArray, dst: FloatArray) -> tuple[Rigid2D, float]:
        """Least-squares rotation + translation (Kabsch, no scale) and the RMS residual."""
        a = np.asarray(src, dtype=np.float64)
        b = np.asarray(dst, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2 or len(a) < 2:
            msg = "need two or more reference points with floor and store positions"
            raise GeometryError(msg)
        ca, cb = a.mean(axis=0), b.mean(axis=0)
        if np.linalg.norm(a - ca, axis=1).max() < 0.2:
            msg = "reference points must be at least 0.2 m apart"
            raise GeometryError(msg)
        h = (a - ca).T @ (b - cb)
        theta = math.atan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])
        rigid = cls(theta, 0.0, 0.0)
        t = cb - rigid.apply(ca[None])[0]
        rigid = cls(theta, float(t[0]), float(t[1]))
        residual = float(np.sqrt(np.mean(np.sum((rigid.apply(a) - b) ** 2, axis=1))))
        return rigid, residual


@dataclass(frozen=True)
class GeoAnchor:
    """The store's origin on Earth and the bearing of its +y axis (degrees clockwise from north)."""

    latitude: float
    longitude: float
    bearing_deg: float = 0.0

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        r = math.hypot(x, y)
        if r < 1e-9:
            return self.latitude, self.longitude
        azimuth = self.bearing_deg + math.degrees(math.atan2(x, y))
        dest = geodesic(meters=r).destination((self.latitude, self.longitude), bearing=azimuth)
        return float(dest.latitude), float(dest.longitude)

    def to_store(self, latitude: float, longitude: float) -> tuple[float, float]:
        inv = Geodesic.WGS84.Inverse(self.latitude, self.longitude, latitude, longitude)
        r = float(inv["s12"])
        angle = math.radians(float(inv["azi1"]) - self.bearing_deg)
        return r * math.sin(angle), r * math.cos(angle)
